import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { AgentMetrics } from '../metrics.js';
import type { PodInfo } from '../attribution/types.js';
import type { AadExchange, ExchangeRequest } from './aad-exchange.js';
import { FederatedIssuer } from './federated.js';
import type { ReadyIdentity } from './select.js';
import { UpstreamError } from './types.js';
import { AadExchangeError } from './aad-failure.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

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

/** Records every exchange; answers with a token named after the assertion, or fails as told. */
function fakeAad(fail?: UpstreamError): AadExchange & { seen: ExchangeRequest[] } {
  const seen: ExchangeRequest[] = [];
  return {
    seen,
    async exchange(req) {
      seen.push(req);
      if (fail) throw fail;
      return { accessToken: `aad-token-for-${req.assertion}`, expiresOn: Math.floor(Date.now() / 1000) + 3599 };
    },
  };
}

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
  const stop = () => {
    server.closeAllConnections();
    server.close();
  };
  return { server, kc, stop };
}

test('with a kubeconfig, the TokenRequest is one POST bound to the calling pod, with the agent’s credentials', async () => {
  const seen: { path?: string; auth?: string; body?: Record<string, unknown> }[] = [];
  const api = await fakeApiServer((req, body, res) => {
    seen.push({ path: req.url, auth: req.headers.authorization, body });
    const ref = (body['spec'] as { boundObjectRef: { uid: string } }).boundObjectRef;
    res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'TokenRequest', status: { token: `assertion-for-${ref.uid}`, expirationTimestamp: '2030-01-01T00:00:00Z' } }));
  });
  const aad = fakeAad();
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad, metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') });
    assert.equal(seen[0]?.path, '/api/v1/namespaces/ns/serviceaccounts/app/token');
    assert.equal(seen[0]?.auth, 'Bearer agent-sa-token');
    assert.deepEqual(seen[0]?.body?.['spec'], {
      audiences: ['api://AzureADTokenExchange'],
      expirationSeconds: 600,
      boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'a', uid: 'uid-a' },
    });
    assert.equal(aad.seen[0]?.assertion, 'assertion-for-uid-a');
  } finally {
    api.stop();
  }
});

test('a refused TokenRequest says why from the API server’s Status; a gone pod is 404', async () => {
  const api = await fakeApiServer((_req, _body, res) =>
    res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Failure', message: 'pods "a" not found', code: 404 })),
  );
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.upstream, 'kubernetes');
    assert.equal(err.status, 404);
    assert.equal(err.message, 'TokenRequest for service account ns/app failed (HTTP 404): pods "a" not found');
  } finally {
    api.stop();
  }
});

test('a TokenRequest the API server does not answer in time is a 503 timeout with Retry-After', async () => {
  const api = await fakeApiServer(() => undefined);
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 100 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'timeout');
    assert.ok((err.retryAfterSeconds ?? 0) > 0);
  } finally {
    api.stop();
  }
});

/** What the API server (1.20) answers when a failurePolicy: Fail webhook can't be called. */
const WEBHOOK_DOWN = {
  kind: 'Status',
  status: 'Failure',
  message: 'Internal error occurred: failed calling webhook "agent-token-requests.podidentity.dev": Post "https://podidentity-webhook.podidentity-system.svc:443/validate-agent-token-requests?timeout=5s": dial tcp 10.0.0.5:443: connect: connection refused',
  reason: 'InternalError',
  code: 500,
};

test('admission webhook unavailable: issuance fails closed with 503 and Retry-After, never 500 and never a token', async () => {
  for (const [status, body] of [
    [500, WEBHOOK_DOWN],
    [503, { kind: 'Status', message: 'the pod identity agent’s token request can’t be checked now: reading pod', code: 503 }],
    [429, { kind: 'Status', message: 'too many requests', code: 429 }],
    [502, { kind: 'Status', message: 'bad gateway', code: 502 }],
  ] as const) {
    const api = await fakeApiServer((_req, _body, res) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body)));
    const aad = fakeAad();
    const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad, metrics: new AgentMetrics(), timeoutMs: 2000 });
    try {
      const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
      assert.ok(err instanceof UpstreamError, `HTTP ${status}`);
      assert.equal(err.status, 503, `HTTP ${status} from the API server`);
      assert.ok((err.retryAfterSeconds ?? 0) > 0, `HTTP ${status}: Retry-After`);
      assert.equal(aad.seen.length, 0, 'nothing reaches Azure AD');
    } finally {
      api.stop();
    }
  }
});

test('an API server that refuses connections is a 503 with Retry-After', async () => {
  const api = await fakeApiServer(() => undefined);
  api.stop();
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 2000 });
  const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
  assert.ok(err instanceof UpstreamError);
  assert.equal(err.status, 503);
  assert.ok((err.retryAfterSeconds ?? 0) > 0);
});

test('the admission webhook refusing the TokenRequest is a 403 that names why, without Retry-After', async () => {
  const api = await fakeApiServer((_req, _body, res) =>
    res.writeHead(403, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', message: 'admission webhook "agent-token-requests.podidentity.dev" denied the request: the pod identity agent may not mint this token: pod ns/a runs on node "b"', code: 403 })),
  );
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 403);
    assert.equal(err.retryAfterSeconds, undefined);
    assert.match(err.message, /denied the request/);
  } finally {
    api.stop();
  }
});

test('each miss asks for an assertion bound to the calling pod and exchanges exactly that one', async () => {
  const api = await fakeApiServer((_req, body, res) => {
    const ref = (body['spec'] as { boundObjectRef: { uid: string } }).boundObjectRef;
    res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'TokenRequest', status: { token: `assertion-for-${ref.uid}` } }));
  });
  const aad = fakeAad();
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad, metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const a = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') });
    const b = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('b', 'uid-b') });
    assert.equal(a.accessToken, 'aad-token-for-assertion-for-uid-a');
    assert.equal(b.accessToken, 'aad-token-for-assertion-for-uid-b');
    assert.deepEqual(aad.seen.map((r) => [r.tenantId, r.clientId, r.scope]), [
      [TENANT, identity.clientId, 'https://vault.azure.net/.default'],
      [TENANT, identity.clientId, 'https://vault.azure.net/.default'],
    ]);
  } finally {
    api.stop();
  }
});

test("Azure AD's refusal passes through as the UpstreamError the handler answers with, and is counted by status", async () => {
  const api = await fakeApiServer((_req, _body, res) => res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: { token: 'assertion' } })));
  const metrics = new AgentMetrics();
  const refusal = new UpstreamError('aad', 429, 'throttled', 'slow down', 5);
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(refusal), metrics, timeoutMs: 2000 });
  try {
    await assert.rejects(issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }), (err) => err === refusal);
    const upstream = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name.includes('upstream'));
    assert.ok(upstream?.values.some((v) => v.labels['upstream'] === 'aad' && v.labels['code'] === '429'));
  } finally {
    api.stop();
  }
});

test('a PodIdentity without a tenant id never reaches Azure AD', async () => {
  const aad = fakeAad();
  const issuer = new FederatedIssuer({ apiServer: { server: 'https://api.invalid', credentials: () => Promise.reject(new Error('no API call expected')) }, authorityHost: 'https://login.example', aad, metrics: new AgentMetrics(), timeoutMs: 2000 });
  await assert.rejects(issuer.issue({ identity: { ...identity, tenantId: '' }, resource: 'r', pod: pod('a', 'uid-a') }), (err: UpstreamError) => err.code === 'no_tenant');
  assert.equal(aad.seen.length, 0);
});

test('AADSTS70021 for a credential the operator wrote moments ago is answered 503 + Retry-After, and is counted as Azure AD’s 400', async () => {
  const api = await fakeApiServer((_req, _body, res) => res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: { token: 'assertion' } })));
  const metrics = new AgentMetrics();
  const now = Date.parse('2026-11-30T12:00:00Z');
  const failing: AadExchange = {
    exchange: () => Promise.reject(new AadExchangeError({ kind: 'refused', status: 400, error: 'invalid_request', aadsts: 70021, description: 'AADSTS70021: No matching federated identity record found for presented assertion.' })),
  };
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: failing, metrics, timeoutMs: 2000, now: () => now });
  const fresh: ReadyIdentity = { ...identity, credentialWrites: new Map([['system:serviceaccount:ns:app', now - 3000]]) };
  try {
    await assert.rejects(issuer.issue({ identity: fresh, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }), (err: UpstreamError) => {
      assert.equal(err.status, 503);
      assert.equal(err.code, 'credential_propagating');
      assert.equal(err.retryAfterSeconds, 3);
      return true;
    });
    const upstream = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name.includes('upstream'));
    assert.ok(upstream?.values.some((v) => v.labels['upstream'] === 'aad' && v.labels['code'] === '400'));
  } finally {
    api.stop();
  }
});

test('a successful exchange is reported with the identity and the pod’s subject (for the first-exchange Event)', async () => {
  const api = await fakeApiServer((_req, _body, res) => res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: { token: 'assertion' } })));
  const seen: string[] = [];
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 2000, onExchanged: (id, subject) => seen.push(`${id.name} ${subject}`) });
  try {
    await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') });
    assert.deepEqual(seen, ['pid system:serviceaccount:ns:app']);
  } finally {
    api.stop();
  }
});

test('pod replaced under the same name mid-request: the TokenRequest conflict is the gone pod’s 404, never a 500', async () => {
  // A StatefulSet pod deleted and recreated between attribution and the TokenRequest: the API server refuses a
  // token bound to the old UID with 409 Conflict.
  const api = await fakeApiServer((_req, _body, res) =>
    res.writeHead(409, { 'Content-Type': 'application/json' }).end(
      JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Conflict', code: 409, message: 'Operation cannot be fulfilled on Pod "a": the UID in the bound object reference (uid-a) does not match the UID in record. The object might have been deleted and then recreated' }),
    ),
  );
  const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(api.kc), authorityHost: 'https://login.example', aad: fakeAad(), metrics: new AgentMetrics(), timeoutMs: 2000 });
  try {
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod: pod('a', 'uid-a') }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.status, 404);
    assert.match(err.message, /HTTP 409/);
  } finally {
    api.stop();
  }
});
