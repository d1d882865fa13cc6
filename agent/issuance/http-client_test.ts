import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { ensureCa, issueServerCertificate, makeTempDir, removeDir } from '../../dev/azure-emulator/tls.js';
import { MAX_ANSWER_BYTES, headerValue, requestText } from './http-client.js';

/** Runs `body` against a local server answering with `handler`, and closes the server whatever happens. */
async function withServer(handler: RequestListener, body: (url: string) => Promise<void>): Promise<void> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await body(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

test('a POST carries its body, its headers and a Content-Length; the answer comes back as text with its headers', async () => {
  let got: { method?: string; type?: string; length?: string; body: string } | undefined;
  await withServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got = { method: req.method, type: req.headers['content-type'], length: req.headers['content-length'], body };
      res.writeHead(429, { 'Retry-After': '7', 'Content-Type': 'application/json' }).end('{"error":"throttled"}');
    });
  }, async (url) => {
    const answer = await requestText(`${url}/token`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=é', timeoutMs: 5_000 });
    assert.deepEqual(got, { method: 'POST', type: 'application/x-www-form-urlencoded', length: String(Buffer.byteLength('grant_type=client_credentials&scope=é')), body: 'grant_type=client_credentials&scope=é' });
    assert.equal(answer.status, 429);
    assert.equal(answer.text, '{"error":"throttled"}');
    assert.equal(headerValue(answer.headers, 'Retry-After'), '7');
  });
});

test('a redirect is refused, not followed (the agent talks only to the endpoints it was given)', async () => {
  let followed = false;
  await withServer((req, res) => {
    if (req.url === '/elsewhere') followed = true;
    res.writeHead(302, { Location: '/elsewhere' }).end();
  }, async (url) => {
    await assert.rejects(requestText(`${url}/metadata/identity/oauth2/token`, { timeoutMs: 5_000 }), /redirect \(302\).*does not follow/);
    assert.equal(followed, false);
  });
});

test('the timeout covers the body: a server that stalls mid-answer fails the request with the timeout named', async () => {
  await withServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"access_token":');
  }, async (url) => {
    const started = performance.now();
    await assert.rejects(requestText(url, { timeoutMs: 150 }), /no complete answer within 150 ms/);
    assert.ok(performance.now() - started >= 140);
  });
});

test('an answer larger than any IMDS or Azure AD document is refused, naming the limit', async () => {
  const chunk = Buffer.alloc(256 * 1024, 'a');
  await withServer((_req, res) => {
    res.writeHead(200);
    const more = () => {
      while (res.write(chunk));
      res.once('drain', more);
    };
    more();
  }, async (url) => {
    await assert.rejects(requestText(url, { timeoutMs: 10_000 }), new RegExp(`more than ${MAX_ANSWER_BYTES} bytes`));
  });
});

test('a connection closed before the answer is complete is an error, not a short answer', async () => {
  await withServer((_req, res) => {
    res.writeHead(200, { 'Content-Length': '100' });
    res.write('{"partial":');
    setImmediate(() => res.socket?.destroy());
  }, async (url) => {
    await assert.rejects(requestText(url, { timeoutMs: 5_000 }), /closed the connection before the answer was complete|socket hang up|aborted/);
  });
});

test('only http and https', async () => {
  await assert.rejects(requestText('file:///etc/passwd', { timeoutMs: 5_000 }), /unsupported URL scheme file:/);
});

test('an HTTPS server whose certificate no trusted CA signed is refused, even with NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment', async () => {
  const dir = await makeTempDir('http-client-test-');
  const previous = process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
  const server = createHttpsServer(await issueServerCertificate(await ensureCa(dir), ['127.0.0.1'], dir).then(({ keyPem, certPem }) => ({ key: keyPem, cert: certPem })), (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"access_token":"from an impostor"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';
    await assert.rejects(requestText(`https://127.0.0.1:${(server.address() as AddressInfo).port}/token`, { timeoutMs: 5_000 }), /certificate/);
  } finally {
    if (previous === undefined) delete process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
    else process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = previous;
    server.closeAllConnections();
    server.close();
    await removeDir(dir);
  }
});

test('a late answer to a request given up on never becomes the answer to the next request (another identity\'s) on a kept-alive connection', async () => {
  const connections = new Set<unknown>();
  await withServer((req, res) => {
    connections.add(req.socket);
    const who = new URL(req.url ?? '/', 'http://x').searchParams.get('client_id');
    const answer = () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ access_token: `token-of-${who}` }));
    if (who === 'slow') setTimeout(answer, 300);
    else answer();
  }, async (url) => {
    assert.equal((await requestText(`${url}/token?client_id=warm`, { timeoutMs: 5_000 })).text, '{"access_token":"token-of-warm"}');
    await assert.rejects(requestText(`${url}/token?client_id=slow`, { timeoutMs: 100 }), /no complete answer within 100 ms/);
    assert.equal((await requestText(`${url}/token?client_id=next`, { timeoutMs: 5_000 })).text, '{"access_token":"token-of-next"}');
    assert.equal(connections.size, 2, 'the connection of the request given up on was closed, not pooled');
  });
});

test('what a request was sent with (credentials in the URL, its path and query) never shows in the errors it fails with', async () => {
  const big = Buffer.alloc(MAX_ANSWER_BYTES + 1, 'a');
  const failures: Record<string, (res: ServerResponse) => void> = {
    redirect: (res) => res.writeHead(307, { Location: '/elsewhere' }).end(),
    oversized: (res) => res.writeHead(200).end(big),
    'closed early': (res) => {
      res.writeHead(200, { 'Content-Length': '100' }).write('{');
      setImmediate(() => res.socket?.destroy());
    },
    silent: () => undefined,
  };
  for (const [name, fail] of Object.entries(failures)) {
    await withServer((_req, res) => fail(res), async (url) => {
      const target = url.replace('http://', 'http://user:password-SECRET@') + '/token/SECRET-PATH?client_assertion=SECRET-ASSERTION';
      const err = await requestText(target, { method: 'POST', body: 'client_assertion=SECRET-BODY', timeoutMs: 200 }).then(
        () => assert.fail(`${name}: answered`),
        (e: unknown) => e as Error,
      );
      assert.doesNotMatch(`${err.message} ${JSON.stringify(err)}`, /SECRET/, name);
    });
  }
});
