import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { AgentMetrics } from '../metrics.js';
import type { PodInfo } from '../attribution/types.js';
import { AzureAdExchange } from './exchange.js';
import { FederatedIssuer, type FederatedIssuerOptions } from './federated.js';
import type { ReadyIdentity } from './select.js';
import { UpstreamError } from './types.js';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const identity: ReadyIdentity = {
  namespace: 'ns',
  name: 'pid',
  mode: 'Federated',
  clientId: '11111111-1111-4111-8111-111111111111',
  principalId: '22222222-2222-4222-8222-222222222222',
  tenantId: TENANT,
  resourceId: '/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i',
};

function pod(name: string, uid: string): PodInfo {
  return { namespace: 'ns', name, uid, serviceAccountName: 'app', labels: {}, nodeName: 'n', hostNetwork: false, phase: 'Running', ips: ['10.0.0.1'] };
}

interface Seen {
  path: string;
  form: URLSearchParams;
  headers: IncomingMessage['headers'];
}

async function fakeAad(answer: (seen: Seen, res: ServerResponse) => void): Promise<{ url: string; seen: Seen[]; server: Server; connections: () => number }> {
  const seen: Seen[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { path: req.url ?? '', form: new URLSearchParams(Buffer.concat(chunks).toString()), headers: req.headers };
      seen.push(s);
      answer(s, res);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server, connections: () => connections };
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const ok = (_: Seen, res: ServerResponse) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', expires_in: 3599, access_token: 'aad-token' }));

/** A TokenRequest fake that issues a distinct assertion per call and records what it was asked. */
function fakeCore() {
  const calls: { name: string; namespace: string; boundTo?: string; audiences?: string[] }[] = [];
  const core: NonNullable<FederatedIssuerOptions['core']> = {
    createNamespacedServiceAccountToken: (async (req: { name: string; namespace: string; body: { spec: { audiences?: string[]; boundObjectRef?: { name?: string; uid?: string } } } }) => {
      calls.push({ name: req.name, namespace: req.namespace, boundTo: `${req.body.spec.boundObjectRef?.name}/${req.body.spec.boundObjectRef?.uid}`, audiences: req.body.spec.audiences });
      return { status: { token: `assertion-for-${req.body.spec.boundObjectRef?.uid}` } };
    }) as unknown as NonNullable<FederatedIssuerOptions['core']>['createNamespacedServiceAccountToken'],
  };
  return { core, calls };
}

test('each miss asks for an assertion bound to the calling pod and exchanges exactly that one', async () => {
  const aad = await fakeAad(ok);
  const { core, calls } = fakeCore();
  const issuer = new FederatedIssuer({ core, authorityHost: aad.url, metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const before = Math.floor(Date.now() / 1000);
    const a = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') });
    await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('b', 'uid-b') });
    assert.equal(a.accessToken, 'aad-token');
    assert.ok(a.expiresOn >= before + 3599 && a.expiresOn <= Math.floor(Date.now() / 1000) + 3599);
    assert.deepEqual(calls.map((c) => c.boundTo), ['a/uid-a', 'b/uid-b']);
    assert.deepEqual(calls[0]?.audiences, ['api://AzureADTokenExchange']);
    assert.equal(aad.seen.length, 2);
    assert.equal(aad.seen[0]?.path, `/${TENANT}/oauth2/v2.0/token`);
    assert.equal(aad.seen[0]?.form.get('client_assertion'), 'assertion-for-uid-a');
    assert.equal(aad.seen[1]?.form.get('client_assertion'), 'assertion-for-uid-b');
    assert.equal(aad.seen[0]?.form.get('grant_type'), 'client_credentials');
    assert.equal(aad.seen[0]?.form.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    assert.equal(aad.seen[0]?.form.get('client_id'), identity.clientId);
    assert.equal(aad.seen[0]?.form.get('scope'), 'https://vault.azure.net/.default');
    assert.match(String(aad.seen[0]?.headers['client-request-id']), /^[0-9a-f-]{36}$/);
    // Both exchanges went over one kept-alive connection.
    assert.equal(aad.connections(), 1);
  } finally {
    issuer.close();
    await stop(aad.server);
  }
});

test("Azure AD's refusal becomes an UpstreamError with its code and the first line of its description", async () => {
  const aad = await fakeAad((_, res) =>
    res.writeHead(401, { 'Content-Type': 'application/json' }).end(
      JSON.stringify({ error: 'invalid_client', error_description: 'AADSTS70021: No matching federated identity record found.\r\nTrace ID: x\r\nTimestamp: y', error_codes: [70021] }),
    ),
  );
  const { core } = fakeCore();
  const metrics = new AgentMetrics();
  const issuer = new FederatedIssuer({ core, authorityHost: aad.url, metrics, timeoutMs: 2000 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.upstream, 'aad');
    assert.equal(err.status, 500);
    assert.equal(err.code, 'invalid_client');
    assert.equal(err.message, `Azure AD refused the federated token exchange for client_id ${identity.clientId}: AADSTS70021: No matching federated identity record found.`);
    assert.ok(!err.message.includes('assertion-for'), 'the assertion is never part of an error');
    assert.match(await metrics.registry.metrics(), /podidentity_agent_upstream_request_duration_seconds_count\{upstream="aad",code="401"\} 1/);
  } finally {
    issuer.close();
    await stop(aad.server);
  }
});

test('throttling answers 429 with Azure AD’s Retry-After', async () => {
  const aad = await fakeAad((_, res) => res.writeHead(429, { 'Retry-After': '12', 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'slow down' })));
  const exchange = new AzureAdExchange(aad.url);
  try {
    const err = await exchange.exchange({ tenantId: TENANT, clientId: 'c', scope: 's/.default', assertion: 'a' }, 2000).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 429);
    assert.equal(err.retryAfterSeconds, 12);
  } finally {
    exchange.close();
    await stop(aad.server);
  }
});

test('an Azure AD that does not answer in time is a 504 timeout', async () => {
  const aad = await fakeAad(() => undefined);
  const exchange = new AzureAdExchange(aad.url);
  try {
    const err = await exchange.exchange({ tenantId: TENANT, clientId: 'c', scope: 's/.default', assertion: 'a' }, 100).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 504);
    assert.equal(err.code, 'timeout');
  } finally {
    exchange.close();
    await stop(aad.server);
  }
});

test('a kept-alive connection the server closed does not fail the next exchange', async () => {
  const aad = await fakeAad(ok);
  const exchange = new AzureAdExchange(aad.url);
  try {
    await exchange.exchange({ tenantId: TENANT, clientId: 'c', scope: 's/.default', assertion: 'a' }, 2000);
    // The server drops the idle connection without telling the client first (as a load balancer may).
    aad.server.closeAllConnections();
    const token = await exchange.exchange({ tenantId: TENANT, clientId: 'c', scope: 's/.default', assertion: 'a' }, 2000);
    assert.equal(token.accessToken, 'aad-token');
  } finally {
    exchange.close();
    await stop(aad.server);
  }
});

test('a tenant id that is not one never reaches the URL', async () => {
  const exchange = new AzureAdExchange('http://127.0.0.1:9');
  try {
    for (const tenantId of ['../x', 'a/b', 'a?b', '']) {
      const err = await exchange.exchange({ tenantId, clientId: 'c', scope: 's/.default', assertion: 'a' }, 1000).catch((e: unknown) => e);
      assert.ok(err instanceof UpstreamError, tenantId);
      assert.equal(err.code, 'bad_tenant');
    }
  } finally {
    exchange.close();
  }
});

test('an answer without a token is an error, not an empty token', async () => {
  const aad = await fakeAad((_, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"token_type":"Bearer"}'));
  const exchange = new AzureAdExchange(aad.url);
  try {
    const err = await exchange.exchange({ tenantId: TENANT, clientId: 'c', scope: 's/.default', assertion: 'a' }, 2000).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.code, 'empty_response');
  } finally {
    exchange.close();
    await stop(aad.server);
  }
});

/** A plain-http "API server" answering TokenRequests, and a kubeconfig pointing at it. */
async function fakeApiServer(answer: (req: IncomingMessage, body: Record<string, unknown>, res: ServerResponse) => void) {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(req, JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'agent-sa-token' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return { server, kc };
}

test('with a kubeconfig, the TokenRequest is one POST bound to the calling pod, with the agent’s credentials', async () => {
  const seen: { path?: string; auth?: string; body?: Record<string, unknown> }[] = [];
  const api = await fakeApiServer((req, body, res) => {
    seen.push({ path: req.url, auth: req.headers.authorization, body });
    const ref = (body['spec'] as { boundObjectRef: { uid: string } }).boundObjectRef;
    res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'TokenRequest', status: { token: `assertion-for-${ref.uid}`, expirationTimestamp: '2030-01-01T00:00:00Z' } }));
  });
  const aad = await fakeAad(ok);
  const issuer = new FederatedIssuer({ kubeConfig: api.kc, authorityHost: aad.url, metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') });
    assert.equal(seen[0]?.path, '/api/v1/namespaces/ns/serviceaccounts/app/token');
    assert.equal(seen[0]?.auth, 'Bearer agent-sa-token');
    assert.deepEqual(seen[0]?.body?.['spec'], {
      audiences: ['api://AzureADTokenExchange'],
      expirationSeconds: 600,
      boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'a', uid: 'uid-a' },
    });
    assert.equal(aad.seen[0]?.form.get('client_assertion'), 'assertion-for-uid-a');
  } finally {
    issuer.close();
    api.server.closeAllConnections();
    api.server.close();
    await stop(aad.server);
  }
});

test('a refused TokenRequest says why from the API server’s Status; a gone pod is 404', async () => {
  const api = await fakeApiServer((_req, _body, res) =>
    res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Failure', message: 'pods "a" not found', code: 404 })),
  );
  const issuer = new FederatedIssuer({ kubeConfig: api.kc, authorityHost: 'http://127.0.0.1:9', metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.upstream, 'kubernetes');
    assert.equal(err.status, 404);
    assert.equal(err.message, 'TokenRequest for service account ns/app failed (HTTP 404): pods "a" not found');
  } finally {
    issuer.close();
    api.server.closeAllConnections();
    api.server.close();
  }
});

test('a TokenRequest the API server does not answer in time is a 504 timeout', async () => {
  const api = await fakeApiServer(() => undefined);
  const issuer = new FederatedIssuer({ kubeConfig: api.kc, authorityHost: 'http://127.0.0.1:9', metrics: new AgentMetrics(), timeoutMs: 100 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 504);
    assert.equal(err.code, 'timeout');
  } finally {
    issuer.close();
    api.server.closeAllConnections();
    api.server.close();
  }
});
