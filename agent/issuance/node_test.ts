import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentMetrics } from '../metrics.js';
import { NodeIssuer } from './node.js';
import { MAX_UPSTREAM_CODE_CHARS, MAX_UPSTREAM_MESSAGE_CHARS, UpstreamError } from './types.js';
import type { ReadyIdentity } from './select.js';

const identity = { clientId: '11111111-1111-4111-8111-111111111111', mode: 'Node' } as ReadyIdentity;

async function upstream(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test('asks the node IMDS for the identity by client_id and returns its token', async () => {
  let asked: URL | undefined;
  const { url, server } = await upstream((req, res) => {
    asked = new URL(req.url ?? '/', 'http://x');
    res.end(JSON.stringify({ access_token: 'tok', expires_on: '2000000000', not_before: '1999996400' }));
  });
  try {
    const issuer = new NodeIssuer({ upstreamImds: url, metrics: new AgentMetrics(), timeoutMs: 1000 });
    const token = await issuer.issue({ identity, resource: 'https://management.azure.com/' } as Parameters<NodeIssuer['issue']>[0]);
    assert.equal(token.accessToken, 'tok');
    assert.equal(token.expiresOn, 2000000000);
    assert.equal(asked?.searchParams.get('client_id'), identity.clientId);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('a node IMDS that stalls mid-answer is a transient 503, not an internal error', async () => {
  const { url, server } = await upstream((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"access_token":');
  });
  try {
    const issuer = new NodeIssuer({ upstreamImds: url, metrics: new AgentMetrics(), timeoutMs: 150 });
    await assert.rejects(
      issuer.issue({ identity, resource: 'https://management.azure.com/' } as Parameters<NodeIssuer['issue']>[0]),
      (err: unknown) => err instanceof UpstreamError && err.status === 503 && err.retryAfterSeconds === 5,
    );
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('Retry-After smuggling: a node IMDS Retry-After that is negative, huge, fractional or garbage reaches the pod as whole seconds within bounds', async () => {
  for (const [status, given] of [
    [429, '-30'],
    [429, '86400000'],
    [503, '1.5'],
    [503, '1e9'],
    [429, 'soon'],
  ] as const) {
    const { url, server } = await upstream((_req, res) => {
      res.writeHead(status, { 'Content-Type': 'application/json', 'Retry-After': given });
      res.end(JSON.stringify({ error: 'throttled', error_description: 'slow down' }));
    });
    try {
      const issuer = new NodeIssuer({ upstreamImds: url, metrics: new AgentMetrics(), timeoutMs: 1000 });
      await assert.rejects(
        issuer.issue({ identity, resource: 'https://management.azure.com/' } as Parameters<NodeIssuer['issue']>[0]),
        (err: unknown) => {
          assert.ok(err instanceof UpstreamError);
          const seconds = err.retryAfterSeconds;
          assert.ok(seconds !== undefined && Number.isInteger(seconds) && seconds >= 1 && seconds <= 60, `Retry-After ${given} became ${String(seconds)}`);
          return true;
        },
      );
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }
});

test('log and answer flooding: a node IMDS refusal with a megabyte-long error code and description reaches the pod and the logs bounded', async () => {
  const { url, server } = await upstream((_req, res) => {
    res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'e'.repeat(100_000), error_description: 'd'.repeat(1_000_000) }));
  });
  try {
    const issuer = new NodeIssuer({ upstreamImds: url, metrics: new AgentMetrics(), timeoutMs: 2_000 });
    const err = await issuer.issue({ identity, resource: 'https://management.azure.com/' } as Parameters<NodeIssuer['issue']>[0]).then(
      () => assert.fail('answered'),
      (e: unknown) => e as UpstreamError,
    );
    assert.ok(err instanceof UpstreamError);
    assert.ok(err.message.length <= MAX_UPSTREAM_MESSAGE_CHARS, `message of ${err.message.length} characters`);
    assert.ok(err.code.length <= MAX_UPSTREAM_CODE_CHARS, `code of ${err.code.length} characters`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
