/**
 * MsalExchange against a local HTTPS server standing in for a hostile or broken Azure AD: real msal-node, the
 * agent's own HTTP client, real TLS (a per-file CA the process trusts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as tls from 'node:tls';
import { waitFor } from '../../dev/support/wait.js';
import { ensureCa, issueServerCertificate, makeTempDir, removeDir } from '../../dev/azure-emulator/tls.js';
import { AadExchangeError, classifyAadFailure } from './aad-failure.js';
import { MsalExchange } from './aad-exchange.js';
import { MAX_UPSTREAM_CODE_CHARS, MAX_UPSTREAM_MESSAGE_CHARS } from './types.js';

const TENANT = '00000000-0000-0000-0000-00000000aaaa';
const CLIENT = '00000000-0000-0000-0000-00000000bbbb';
const ASSERTION = 'header.pod-service-account-assertion.signature';

let dir = '';
let key = '';
let cert = '';

before(async () => {
  dir = await makeTempDir('aad-exchange-test-');
  const ca = await ensureCa(dir);
  ({ keyPem: key, certPem: cert } = await issueServerCertificate(ca, ['127.0.0.1'], dir));
  const current = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...current, ca.certPem]);
});

after(async () => {
  await removeDir(dir);
});

/** How the fake Azure AD answers each of its two endpoints; `undefined` leaves the request unanswered. */
interface FakeAad {
  discovery?: (req: IncomingMessage, res: ServerResponse) => void;
  token?: (req: IncomingMessage, res: ServerResponse, body: string) => void;
}

function openIdConfiguration(base: string): object {
  return {
    token_endpoint: `${base}/oauth2/v2.0/token`,
    jwks_uri: `${base}/discovery/v2.0/keys`,
    issuer: `${base}/v2.0`,
    authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
    end_session_endpoint: `${base}/oauth2/v2.0/logout`,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    response_types_supported: ['code', 'id_token'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    cloud_instance_name: 'microsoftonline.com',
  };
}

const answersDiscovery = (authority: () => string) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(openIdConfiguration(`${authority()}/${TENANT}`)));
};

/** Runs `body` against a fake Azure AD; `open()` counts the connections the agent still holds to it. */
async function withAad(fake: (authority: () => string) => FakeAad, body: (authority: string, open: () => number) => Promise<void>): Promise<void> {
  let authority = '';
  const handlers = fake(() => authority);
  const sockets = new Set<Socket>();
  const server: Server = createServer({ key, cert }, (req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'https://aad').pathname;
      if (path.endsWith('/.well-known/openid-configuration')) handlers.discovery?.(req, res);
      else if (path.endsWith('/oauth2/v2.0/token')) handlers.token?.(req, res, text);
      else res.writeHead(404).end('{}');
    });
  });
  server.on('secureConnection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  authority = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await body(authority, () => sockets.size);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const request = { tenantId: TENANT, clientId: CLIENT, scope: 'https://management.azure.com/.default', assertion: ASSERTION };

test('the harness: a well-behaved Azure AD gets the pod assertion and its token comes back', async () => {
  let sent = '';
  await withAad((authority) => ({
    discovery: answersDiscovery(authority),
    token: (_req, res, body) => {
      sent = body;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: 'the-token' }));
    },
  }), async (authority) => {
    const token = await new MsalExchange(authority).exchange(request, 5_000);
    assert.equal(token.accessToken, 'the-token');
    assert.equal(new URLSearchParams(sent).get('client_assertion'), ASSERTION);
  });
});

test('an Azure AD that never answers the token request: the exchange gives up in time and its connection does not stay open', async () => {
  await withAad((authority) => ({ discovery: answersDiscovery(authority), token: () => undefined }), async (authority, open) => {
    const started = performance.now();
    await assert.rejects(new MsalExchange(authority).exchange(request, 300), (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable' && /did not answer within 300 ms/.test(err.message));
    assert.ok(performance.now() - started < 2_000);
    await waitFor('the agent to close its connection to the stalled token endpoint', () => open() === 0, { timeoutMs: 3_000 });
  });
});

test('an Azure AD that stalls mid-answer (headers, half a body) holds no connection past the exchange', async () => {
  await withAad((authority) => ({
    discovery: answersDiscovery(authority),
    token: (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"token_type":"Bearer","access_token":"');
    },
  }), async (authority, open) => {
    await assert.rejects(new MsalExchange(authority).exchange(request, 300), (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable');
    await waitFor('the agent to close its connection to the stalled token endpoint', () => open() === 0, { timeoutMs: 3_000 });
  });
});

test('an Azure AD whose discovery document never comes holds no connection past the exchange', async () => {
  await withAad(() => ({ discovery: () => undefined }), async (authority, open) => {
    await assert.rejects(new MsalExchange(authority).exchange(request, 300), (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable');
    await waitFor('the agent to close its connection to the stalled discovery endpoint', () => open() === 0, { timeoutMs: 3_000 });
  });
});

test('log and answer flooding: an Azure AD error with a megabyte-long code and description reaches the pod and the logs bounded', async () => {
  await withAad((authority) => ({
    discovery: answersDiscovery(authority),
    token: (_req, res) => {
      res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'e'.repeat(100_000), error_description: `AADSTS50000: ${'d'.repeat(1_000_000)}`, error_codes: [50000] }));
    },
  }), async (authority) => {
    const err = await new MsalExchange(authority).exchange(request, 5_000).then(
      () => assert.fail('answered'),
      (e: unknown) => e as AadExchangeError,
    );
    assert.ok(err instanceof AadExchangeError && err.failure.kind === 'refused', String(err));
    const answered = classifyAadFailure(err.failure, { clientId: CLIENT, subject: 'system:serviceaccount:app:reader', credentialWrittenAt: null, now: Date.now(), propagationWindowMs: 60_000 });
    assert.ok(answered.message.length <= MAX_UPSTREAM_MESSAGE_CHARS, `message of ${answered.message.length} characters`);
    assert.ok(answered.code.length <= MAX_UPSTREAM_CODE_CHARS, `code of ${answered.code.length} characters`);
    assert.match(answered.message, /AADSTS50000: d+…$/, 'the start of what Azure AD said is kept, the cut is marked');
  });
});

test('two pods of one identity exchanging at once over the shared keep-alive connections: each exchange sends its own pod\'s assertion and gets its own token', async () => {
  let waiting: (() => void)[] = [];
  await withAad((authority) => ({
    discovery: answersDiscovery(authority),
    token: (_req, res, body) => {
      const assertion = new URLSearchParams(body).get('client_assertion');
      const answer = () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: `token-for-${assertion}` }));
      if (assertion === 'warm-up') return answer();
      // Both pods' requests are held until both arrived, then answered in the opposite order.
      waiting.unshift(answer);
      if (waiting.length === 2) {
        for (const answer of waiting) answer();
        waiting = [];
      }
    },
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    // Discovery done and a connection in the pool, as for an identity already in use.
    assert.equal((await exchange.exchange({ ...request, assertion: 'warm-up' }, 5_000)).accessToken, 'token-for-warm-up');
    const [a, b] = await Promise.all([exchange.exchange({ ...request, assertion: 'pod-a' }, 5_000), exchange.exchange({ ...request, assertion: 'pod-b' }, 5_000)]);
    assert.equal(a.accessToken, 'token-for-pod-a');
    assert.equal(b.accessToken, 'token-for-pod-b');
  });
});

test('the identities of one tenant share its discovery document: three identities\' first tokens cost Azure AD one discovery, a failed one is asked again', async () => {
  let discoveries = 0;
  let failNext = true;
  await withAad((authority) => ({
    discovery: (req, res) => {
      discoveries++;
      if (failNext) {
        failNext = false;
        res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":"temporarily_unavailable"}');
        return;
      }
      answersDiscovery(authority)(req, res);
    },
    token: (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: 'the-token' }));
    },
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    await assert.rejects(exchange.exchange(request, 5_000), AadExchangeError);
    assert.equal(discoveries, 1);
    for (const client of ['00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000000c3']) {
      assert.equal((await exchange.exchange({ ...request, clientId: client }, 5_000)).accessToken, 'the-token');
    }
    assert.equal(discoveries, 2, 'the failed discovery was asked again once, then its document served the other identities');
  });
});

const tokenAnswer = (res: ServerResponse, accessToken = 'the-token') =>
  res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: accessToken }));

test('discovery cache poisoning by a 200 that is not a discovery document: it is not kept, the tenant\'s next identity asks again and gets its token', async () => {
  let discoveries = 0;
  await withAad((authority) => ({
    discovery: (req, res) => {
      // A broken front end or proxy answering 200 for once: JSON, but no endpoints.
      if (discoveries++ === 0) return void res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"error":"temporarily_unavailable"}');
      answersDiscovery(authority)(req, res);
    },
    token: (_req, res) => tokenAnswer(res),
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    await assert.rejects(exchange.exchange(request, 5_000), (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable');
    const next = await exchange.exchange({ ...request, clientId: '00000000-0000-0000-0000-0000000000c1' }, 5_000).then((t) => t.accessToken, (e: unknown) => String(e));
    assert.equal(next, 'the-token', 'the next identity of the tenant was not served the rejected answer');
    assert.equal(discoveries, 2);
  });
});

test('discovery cache poisoning with a token_endpoint on another origin: the pod\'s assertion is never sent there, and the document is not kept', async () => {
  const elsewhere: string[] = [];
  await withAad(() => ({ token: (_req, res, body) => (elsewhere.push(body), tokenAnswer(res, 'attacker-token')) }), async (attacker) => {
    let discoveries = 0;
    await withAad((authority) => ({
      discovery: (_req, res) => {
        discoveries++;
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ...openIdConfiguration(`${authority()}/${TENANT}`), token_endpoint: `${attacker}/${TENANT}/oauth2/v2.0/token` }));
      },
      token: (_req, res) => tokenAnswer(res),
    }), async (authority) => {
      const exchange = new MsalExchange(authority);
      for (const clientId of [CLIENT, '00000000-0000-0000-0000-0000000000c1']) {
        await assert.rejects(exchange.exchange({ ...request, clientId }, 5_000), (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable');
      }
      assert.deepEqual(elsewhere, [], 'no request reached the other origin');
      assert.equal(discoveries, 2, 'the refused document was not served to the next identity');
    });
  });
});

test('discovery cache memory growth: a discovery document far larger than Azure AD\'s is used but not kept', async () => {
  let discoveries = 0;
  await withAad((authority) => ({
    discovery: (_req, res) => {
      discoveries++;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ...openIdConfiguration(`${authority()}/${TENANT}`), padding: 'p'.repeat(1_000_000) }));
    },
    token: (_req, res) => tokenAnswer(res),
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    for (const clientId of [CLIENT, '00000000-0000-0000-0000-0000000000c1']) assert.equal((await exchange.exchange({ ...request, clientId }, 5_000)).accessToken, 'the-token');
    assert.equal(discoveries, 2);
  });
});

test('discovery cache keys: two tenants each get their own document, and each identity\'s assertion goes to its own tenant\'s token endpoint', async () => {
  const OTHER_TENANT = '00000000-0000-0000-0000-00000000cccc';
  const posted: string[] = [];
  await withAad((authority) => ({
    discovery: (req, res) => {
      const tenant = new URL(req.url ?? '/', 'https://aad').pathname.split('/')[1];
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(openIdConfiguration(`${authority()}/${tenant}`)));
    },
    token: (req, res) => (posted.push(new URL(req.url ?? '/', 'https://aad').pathname), tokenAnswer(res)),
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    await exchange.exchange(request, 5_000);
    await exchange.exchange({ ...request, tenantId: OTHER_TENANT, clientId: '00000000-0000-0000-0000-0000000000c1' }, 5_000);
    await exchange.exchange({ ...request, clientId: '00000000-0000-0000-0000-0000000000c2' }, 5_000);
    assert.deepEqual(posted, [`/${TENANT}/oauth2/v2.0/token`, `/${OTHER_TENANT}/oauth2/v2.0/token`, `/${TENANT}/oauth2/v2.0/token`]);
  });
});

test('concurrent first exchanges of one tenant\'s identities: each gets its token, and one whose discovery stalls does not hold the others', async () => {
  let discoveries = 0;
  await withAad((authority) => ({
    discovery: (req, res) => {
      // The first discovery never comes: an exchange that shared it would wait for it.
      if (discoveries++ === 0) return;
      answersDiscovery(authority)(req, res);
    },
    token: (_req, res, body) => tokenAnswer(res, `token-for-${new URLSearchParams(body).get('client_id')}`),
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    const stalled = exchange.exchange(request, 1_000);
    const others = ['c1', 'c2', 'c3', 'c4'].map((c) => `00000000-0000-0000-0000-0000000000${c}`);
    const tokens = await Promise.all(others.map((clientId) => exchange.exchange({ ...request, clientId }, 5_000).then((t) => t.accessToken)));
    assert.deepEqual(tokens, others.map((clientId) => `token-for-${clientId}`));
    await assert.rejects(stalled, (err) => err instanceof AadExchangeError && err.failure.kind === 'unreachable');
    assert.ok(discoveries >= 2 && discoveries <= 1 + others.length, `${discoveries} discoveries`);
  });
});

test('MSAL_FORCE_REGION in the agent\'s environment: the exchange still goes to the configured authority, not a regional host', async () => {
  const before = process.env.MSAL_FORCE_REGION;
  process.env.MSAL_FORCE_REGION = 'westus2';
  try {
    await withAad((authority) => ({ discovery: answersDiscovery(authority), token: (_req, res) => tokenAnswer(res) }), async (authority) => {
      const token = await new MsalExchange(authority).exchange(request, 5_000).then((t) => t.accessToken, (e: unknown) => String(e));
      assert.equal(token, 'the-token');
    });
  } finally {
    if (before === undefined) delete process.env.MSAL_FORCE_REGION;
    else process.env.MSAL_FORCE_REGION = before;
  }
});

test('two pods of one identity on its very first exchange (discovery not yet fetched, both at once): each sends its own pod\'s assertion', async () => {
  await withAad((authority) => ({
    discovery: answersDiscovery(authority),
    token: (_req, res, body) => tokenAnswer(res, `token-for-${new URLSearchParams(body).get('client_assertion')}`),
  }), async (authority) => {
    const exchange = new MsalExchange(authority);
    const tokens = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((assertion) => exchange.exchange({ ...request, assertion }, 5_000).then((t) => t.accessToken)));
    assert.deepEqual(tokens, ['token-for-pod-a', 'token-for-pod-b', 'token-for-pod-c']);
  });
});
