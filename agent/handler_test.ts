import assert from 'node:assert/strict';
import { Agent as HttpAgent, createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { createLogger } from '../lib/log.js';
import { Attributor } from './attribution/attributor.js';
import { AuditLog } from './audit.js';
import { matchException, type ExceptionDirectory, type ImdsException } from './attribution/exceptions.js';
import { TokenCache } from './cache/token-cache.js';
import { IssuanceLimits } from './issuance/limits.js';
import { createImdsHandler } from './handler.js';
import { createImdsServer } from './imds-server.js';
import type { IssuedToken } from './imds/protocol.js';
import { timed, UpstreamError, type Issuer, type IssueRequest } from './issuance/types.js';
import { AgentMetrics } from './metrics.js';
import type { PodInfo } from './attribution/types.js';
import { FakeIdentities, FakePods, pod, podIdentity } from './testing/fakes.js';

class FakeIssuer implements Issuer {
  calls: IssueRequest[] = [];
  fail?: UpstreamError;
  gate?: Promise<void>;
  /** A round trip to the fake upstream, timed on the request's upstream clock as the real issuers do. */
  upstreamMs = 0;
  async issue(req: IssueRequest): Promise<IssuedToken> {
    this.calls.push(req);
    await this.gate;
    if (this.upstreamMs) await timed(req.upstream, () => new Promise((r) => setTimeout(r, this.upstreamMs)));
    if (this.fail) throw this.fail;
    const now = Math.floor(Date.now() / 1000);
    return { accessToken: `token-for-${req.identity.clientId}-${this.calls.length}`, expiresOn: now + 3600, notBefore: now };
  }
}

const POD_A = '127.0.0.11';
const POD_B = '127.0.0.12';
const STRANGER = '127.0.0.13';
/** Generous caps: these tests are about the handler, not the listener's limits. */
const TEST_LIMITS = { maxConnections: 1000, maxConnectionsPerSource: 1000, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000 };

let server: Server;
let upstream: Server;
let port: number;
let pods: FakePods;
let identities: FakeIdentities;
let federated: FakeIssuer;
let nodeIssuer: FakeIssuer;
let metrics: AgentMetrics;
let exceptionEntries: ImdsException[];
/** False while the exceptions ConfigMap's watch is broken (its cache may miss a revocation). */
let exceptionsFresh = true;
const exceptions: ExceptionDirectory = { match: (p) => matchException(exceptionEntries, p), hasSynced: () => true, isFresh: () => exceptionsFresh };
let withExceptions = true;
let cache: TokenCache;
const metadataProxy = true;
/** Every request the fake node IMDS received (path and query as sent). */
let upstreamSeen: string[] = [];

function get(
  path: string,
  { from = POD_A, headers = { Metadata: 'true' } as Record<string, string>, method = 'GET' } = {},
): Promise<{ status: number; body: Record<string, string>; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, localAddress: from, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: (method === 'HEAD' ? {} : JSON.parse(text)) as Record<string, string>, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}


/**
 * Sends `text` as is on one connection from `from` and returns everything the agent wrote until it closed
 * (the last request asks for `Connection: close`, or the parser refuses the bytes).
 */
function raw(text: string, from = POD_B): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: from }, () => socket.write(text));
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
}

const TOKEN = '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net';

before(async () => {
  upstream = createServer((req, res) => {
    upstreamSeen.push(req.url ?? '');
    if (req.url?.includes('throttle')) return void res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '9' }).end('{"error":"throttled"}');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ path: req.url, metadata: req.headers['metadata'] }));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  server = createImdsServer((req, res) => handler(req, res), TEST_LIMITS);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(async () => {
  server.closeAllConnections();
  upstream.closeAllConnections();
  await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => upstream.close(r))]);
});

let handler: ReturnType<typeof createImdsHandler>;
let audit: AuditLog;
afterEach(() => audit.stop());
beforeEach(() => {
  pods = new FakePods();
  identities = new FakeIdentities();
  federated = new FakeIssuer();
  nodeIssuer = new FakeIssuer();
  metrics = new AgentMetrics();
  exceptionEntries = [];
  exceptionsFresh = true;
  upstreamSeen = [];
  pods.cached = [pod('a', POD_A), pod('b', POD_B, { labels: {} })];
  pods.server = pods.cached;
  identities.set([podIdentity('reader', 'app', { clientId: 'reader-client' })]);
  handler = createImdsHandler({
    nodeName: 'node-1',
    defaultMode: 'Federated',
    notReadyWaitMs: 300,
    metadataProxy,
    upstreamImds: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    upstreamTimeoutMs: 2000,
    attributor: new Attributor('node-1', pods, identities),
    pods,
    identities,
    issuers: { Federated: federated, Node: nodeIssuer },
    cache: (cache = new TokenCache({ maxEntries: 10, maxEntriesPerPrincipal: 5, safetyMarginSeconds: 300, refreshAheadSeconds: 0, bypassMinIntervalMs: 5000 })),
    issuanceLimits: new IssuanceLimits({ maxResources: 5, maxExchanges: 8, windowMs: 60_000, onRefused: (reason) => metrics.rejections.inc({ reason }) }),
    metrics,
    logger: createLogger('test', 'error'),
    audit: (audit = new AuditLog(createLogger('test', 'error'))),
    ...(withExceptions ? { exceptions } : {}),
  });
});

/** Replaces cached pod `i` (and the same pod on the server side) with a changed copy, as a watch event would. */
function changePod(i: number, change: Partial<PodInfo>): void {
  const old = pods.cached[i]!;
  const changed = { ...old, ...change };
  pods.cached = pods.cached.map((p) => (p === old ? changed : p));
  pods.server = pods.server.map((p) => (p === old ? changed : p));
}

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

describe('IMDS handler', () => {
  test('issues the pod’s identity with IMDS’s body, then serves it from the cache', async () => {
    const first = await get(TOKEN);
    assert.equal(first.status, 200);
    assert.equal(first.body['client_id'], 'reader-client');
    assert.equal(first.body['resource'], 'https://vault.azure.net');
    assert.equal(first.body['token_type'], 'Bearer');
    for (const v of Object.values(first.body)) assert.equal(typeof v, 'string');
    assert.equal(federated.calls[0]?.pod.name, 'a');
    const second = await get(TOKEN.replace('/metadata/identity/oauth2/token', '/Metadata/Identity/OAuth2/Token/'));
    assert.equal(second.body['access_token'], first.body['access_token']);
    assert.equal(federated.calls.length, 1);
    assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'issued' }), 2);
    const hits = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'podidentity_agent_token_request_duration_seconds');
    assert.ok(hits?.values.some((v) => v.labels['cache'] === 'hit' && v.labels['code'] === '200' && v.labels['mode'] === 'Federated'));
  });

  test('on one keep-alive connection every request is authorised again: what was decided is never reused past a change', async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const ask = () =>
      new Promise<{ status: number; body: Record<string, string> }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: TOKEN, agent, localAddress: POD_A, headers: { Metadata: 'true' } }, (res) => {
          sockets.add(res.socket);
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, string> }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      assert.equal((await ask()).status, 200);
      assert.equal((await ask()).status, 200, 'answered from the cache');
      identities.set([]);
      assert.equal((await ask()).status, 400, 'PodIdentity deleted: refused on the same connection');
      identities.set([podIdentity('reader', 'app', { clientId: 'reader-client', ready: false })]);
      assert.equal((await ask()).status, 503, 'PodIdentity no longer Ready: not served from the cache');
      identities.set([podIdentity('reader', 'app', { clientId: 'other-client' })]);
      const moved = await ask();
      assert.equal(moved.status, 200);
      assert.equal(moved.body['client_id'], 'other-client', 'the identity changed: its own token, not the old one');
      pods.cached = [pod('a', POD_A, { labels: {} }), pod('b', POD_B, { labels: {} })];
      assert.equal((await ask()).status, 400, 'pod relabelled out of the selector: refused');
      pods.cached = [pod('a', POD_A), pod('b', POD_B, { labels: {} })];
      pods.server = pods.cached;
      assert.equal((await ask()).status, 200);
      pods.cached = [pod('a', POD_A, { serviceAccountName: 'other' }), pod('b', POD_B, { labels: {} })];
      const before = federated.calls.length;
      assert.equal((await ask()).status, 200);
      assert.equal(federated.calls.length, before + 1, 'another service account is another principal: a token of its own');
      assert.equal(sockets.size, 1, 'every request went over one connection');
    } finally {
      agent.destroy();
    }
  });

  test('a broken PodIdentity watch: no token, not even a cached one on a verified connection, until the cache is fresh again', async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const ask = () =>
      new Promise<{ status: number; retryAfter: unknown }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: TOKEN, agent, localAddress: POD_A, headers: { Metadata: 'true' } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      assert.equal((await ask()).status, 200);
      identities.fresh = false;
      const refused = await ask();
      assert.equal(refused.status, 503, 'a PodIdentity deleted while the watch was down may still show: fail closed');
      assert.ok(Number(refused.retryAfter) >= 1);
      const fresh = await get(TOKEN);
      assert.equal(fresh.status, 503, 'on a new connection too');
      identities.fresh = true;
      assert.equal((await ask()).status, 200);
    } finally {
      agent.destroy();
    }
  });

  test('concurrent first requests make one upstream call', async () => {
    let open!: () => void;
    federated.gate = new Promise((r) => (open = r));
    const all = Promise.all(Array.from({ length: 20 }, () => get(TOKEN)));
    await new Promise((r) => setTimeout(r, 50));
    open();
    const results = await all;
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(federated.calls.length, 1);
  });

  test('miss overhead: a miss is measured without its upstream round trip; hits and misses it shared are not', async () => {
    federated.upstreamMs = 80;
    const overhead = async () => (await metrics.registry.getSingleMetric('podidentity_agent_miss_overhead_seconds')!.get()).values;
    const stat = async (suffix: string) => (await overhead()).find((v) => (v as { metricName?: string }).metricName === `podidentity_agent_miss_overhead_seconds${suffix}` && v.labels['mode'] === 'Federated')?.value ?? 0;
    assert.equal((await get(TOKEN)).status, 200);
    assert.equal(await stat('_count'), 1);
    const total = (await metrics.registry.getSingleMetric('podidentity_agent_token_request_duration_seconds')!.get()).values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_sum'))?.value ?? 0;
    assert.ok(total >= 0.08, `the request took the upstream's 80 ms (${total} s)`);
    assert.ok((await stat('_sum')) < 0.05, `the agent's own time leaves the 80 ms out (${await stat('_sum')} s)`);
    assert.equal((await get(TOKEN)).status, 200, 'a hit');
    let open!: () => void;
    federated.gate = new Promise((r) => (open = r));
    const shared = Promise.all([get(`${TOKEN}x`), get(`${TOKEN}x`)]);
    await new Promise((r) => setTimeout(r, 30));
    open();
    assert.ok((await shared).every((r) => r.status === 200));
    assert.equal(await stat('_count'), 2, 'one more miss; the hit and the request that shared the miss add nothing');
  });

  test('Node mode goes to the node issuer', async () => {
    identities.set([podIdentity('reader', 'app', { clientId: 'node-client', mode: 'Node' })]);
    assert.equal((await get(TOKEN)).status, 200);
    assert.equal(nodeIssuer.calls.length, 1);
    assert.equal(federated.calls.length, 0);
  });

  test('missing Metadata header and the bare SDK probe get IMDS’s 400', async () => {
    for (const path of [TOKEN, '/metadata/identity/oauth2/token']) {
      const res = await get(path, { headers: {} });
      assert.equal(res.status, 400);
      assert.deepEqual(res.body, { error: 'invalid_request', error_description: 'Required metadata header not specified' });
    }
    assert.equal(federated.calls.length, 0);
  });

  test('a spoofed X-Forwarded-For from a stranger is refused; attribution never reads headers', async () => {
    const res = await get(TOKEN, { from: STRANGER, headers: { Metadata: 'true', 'X-Forwarded-For': POD_A } });
    assert.equal(res.status, 400);
    assert.equal(federated.calls.length, 0);
    // Other headers naming a pod IP change nothing either.
    const other = await get(TOKEN, { from: STRANGER, headers: { Metadata: 'true', 'X-Real-IP': POD_A, Forwarded: `for=${POD_A}` } });
    assert.equal(other.status, 400);
    assert.match(other.body['error_description'] ?? '', /^Identity not found: no pod on node node-1 has IP 127\.0\.0\.13/);
    assert.equal(federated.calls.length, 0);
  });

  test('unknown pod, unbound pod, multiple identities, protocol errors', async () => {
    assert.equal((await get(TOKEN, { from: STRANGER })).body['error'], 'invalid_request');
    const unbound = await get(TOKEN, { from: POD_B });
    assert.equal(unbound.status, 400);
    assert.match(unbound.body['error_description'] ?? '', /^Identity not found: no PodIdentity in namespace app selects pod b/);
    identities.set([podIdentity('reader'), podIdentity('writer')]);
    changePod(0, { labels: {} });
    identities.set([
      { ...podIdentity('one'), spec: { identity: { managed: {} }, selector: {} } },
      { ...podIdentity('two'), spec: { identity: { managed: {} }, selector: {} } },
    ]);
    const multiple = await get(TOKEN);
    assert.equal(multiple.status, 400);
    assert.match(multiple.body['error_description'] ?? '', /^Multiple user assigned identities exist/);
    assert.equal((await get(`${TOKEN}&client_id=two-client`)).body['client_id'], 'two-client');
    const echoed = await get(`${TOKEN}&mi_res_id=${encodeURIComponent('/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/one')}`);
    assert.equal(echoed.body['client_id'], 'one-client');
    assert.ok(echoed.body['msi_res_id']);
    assert.equal((await get('/metadata/identity/oauth2/token?resource=x')).status, 400);
    assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'unknown_pod' }), 1);
  });

  test('an IP claimed by two live pods is refused with 503 + Retry-After', async () => {
    pods.cached = pods.server = [pod('a', POD_A), pod('a2', POD_A)];
    const res = await get(TOKEN);
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.match(res.body['error_description'] ?? '', /claimed by more than one live pod/);
    assert.equal(federated.calls.length, 0);
  });

  test('not Ready: waits for the informer event, or answers 503 + Retry-After after the bounded wait', async () => {
    identities.set([podIdentity('reader', 'app', { ready: false })]);
    const started = Date.now();
    const res = await get(TOKEN);
    assert.equal(res.status, 503);
    assert.ok(res.headers['retry-after']);
    assert.ok(Date.now() - started >= 250 && Date.now() - started < 2000);
    const pending = get(TOKEN);
    setTimeout(() => identities.set([podIdentity('reader', 'app', { clientId: 'now-ready' })]), 50);
    const ok = await pending;
    assert.equal(ok.status, 200);
    assert.equal(ok.body['client_id'], 'now-ready');
  });

  test('authorisation runs before the cache: deleting or unbinding the pod stops issuance at once', async () => {
    assert.equal((await get(TOKEN)).status, 200);
    // A change of the pod is a new object, as the informer delivers it (cached objects are never changed in place).
    pods.cached = [{ ...pods.cached[0]!, labels: {} }, pods.cached[1]!];
    assert.equal((await get(TOKEN)).status, 400);
    pods.cached = [{ ...pods.cached[0]!, labels: { 'podidentity.dev/identity': 'reader' } }, pods.cached[1]!];
    assert.equal((await get(TOKEN)).status, 200);
    pods.cached = [];
    pods.server = [];
    assert.equal((await get(TOKEN)).status, 400);
    assert.equal(federated.calls.length, 1, 'the cached token was never handed out after the pod went away');
  });

  test('cache-busting: a pod asking for many distinct resources gets 429 + Retry-After past the cap and evicts no other pod’s token', async () => {
    identities.set([podIdentity('reader', 'app', { clientId: 'reader-client' }), podIdentity('writer', 'app', { clientId: 'writer-client' })]);
    pods.cached = pods.server = [pod('a', POD_A), pod('b', POD_B, { labels: { 'podidentity.dev/identity': 'writer' }, serviceAccountName: 'writer' })];
    const victim = await get(TOKEN, { from: POD_B });
    assert.equal(victim.status, 200);
    const victimCalls = () => federated.calls.filter((c) => c.identity.clientId === 'writer-client').length;
    assert.equal(victimCalls(), 1);
    const statuses: number[] = [];
    let refusal: Awaited<ReturnType<typeof get>> | undefined;
    for (let i = 0; i < 30; i++) {
      const res = await get(TOKEN.replace('vault.azure.net', `bust-${i}.example`));
      statuses.push(res.status);
      if (res.status !== 200) refusal ??= res;
    }
    assert.equal(statuses.filter((s) => s === 200).length, 5, `statuses ${statuses.join(',')}`);
    assert.equal(refusal?.status, 429);
    assert.equal(refusal?.body['error'], 'too_many_requests');
    assert.match(refusal?.body['error_description'] ?? '', /distinct resources/);
    assert.ok(Number(refusal?.headers['retry-after']) >= 1);
    assert.ok(federated.calls.filter((c) => c.identity.clientId === 'reader-client').length <= 5, 'the attacker’s identity spent at most its cap upstream');
    const again = await get(TOKEN, { from: POD_B });
    assert.equal(again.body['access_token'], victim.body['access_token'], 'the other pod’s token is still cached');
    assert.equal(victimCalls(), 1);
    assert.equal(await counter('podidentity_agent_rejections_total', { reason: 'resources_per_identity' }), 25);
  });

  test('cross-namespace starvation through a shared Node identity: one namespace busting the caps leaves another namespace its tokens', async () => {
    // Two namespaces bind the same existing identity (a policy allows both); Node mode tokens do not depend on the pod.
    identities.set([podIdentity('reader', 'app', { clientId: 'shared-client', mode: 'Node' }), podIdentity('reader', 'other', { clientId: 'shared-client', mode: 'Node' })]);
    pods.cached = pods.server = [pod('a', POD_A), pod('b', POD_B, { namespace: 'other' })];
    const victim = await get(TOKEN, { from: POD_B });
    assert.equal(victim.status, 200);
    for (let i = 0; i < 30; i++) await get(TOKEN.replace('vault.azure.net', `bust-${i}.example`));
    assert.equal((await get(TOKEN.replace('vault.azure.net', 'bust-0.example'), { from: POD_A })).status, 200, 'the attacker keeps what it got');
    const next = await get(TOKEN.replace('vault.azure.net', 'storage.azure.com'), { from: POD_B });
    assert.equal(next.status, 200, `the other namespace is not capped by the attacker: ${JSON.stringify(next.body)}`);
    const again = await get(TOKEN, { from: POD_B });
    assert.equal(again.body['access_token'], victim.body['access_token'], 'and its cached token was not evicted');
  });

  test('upstream errors are IMDS JSON with their status', async () => {
    federated.fail = new UpstreamError('aad', 429, 'throttled', 'slow down', 7);
    const res = await get(TOKEN);
    assert.equal(res.status, 429);
    assert.equal(res.headers['retry-after'], '7');
    assert.deepEqual(Object.keys(res.body).sort(), ['error', 'error_description']);
  });

  test('other metadata paths are proxied with the Metadata header; identity paths never are', async () => {
    const res = await get('/metadata/instance/compute?api-version=2021-02-01');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { path: '/metadata/instance/compute?api-version=2021-02-01', metadata: 'true' });
    assert.equal((await get('/metadata/identity/info')).status, 404);
    assert.equal((await get('/metadata/instance', { headers: {} })).status, 400);
  });

  describe('attack: the node’s identities through the metadata proxy (encoded token paths)', () => {
    const QUERY = '?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F';
    /** Every spelling below decodes (as IMDS decodes it) to the token path. */
    const TOKEN_SPELLINGS = [
      '/metadata/%69dentity/oauth2/token',
      '/metadata/IDENTIT%59/oauth2/token',
      '/metadata/identity%2Foauth2%2Ftoken',
      '/metadata/identity%2foauth2%2ftoken',
      '/metadata/identity/oauth2/%74oken',
      '/%6detadata/identity/oauth2/token',
      '/metadata//identity/oauth2/token',
      '//metadata/identity/oauth2/token',
      '/metadata/./identity/oauth2/token',
      '/metadata/%2e/identity/oauth2/token',
      '/metadata/instance/../identity/oauth2/token',
      '/metadata/instance/%2e%2e/identity/oauth2/token',
      '/metadata/instance%2F..%2Fidentity/oauth2/token',
      '/metadata\\identity\\oauth2\\token',
      '/metadata%5Cidentity%5Coauth2%5Ctoken',
      '/METADATA/IDENTITY/OAUTH2/TOKEN',
      '/metadata/identity/oauth2/token/',
      '/metadata/identity/oauth2/token%2F',
    ];
    const HINTS = ['', '&client_id=node-kubelet', '&object_id=node-kubelet-oid', '&msi_res_id=%2Fkubelet', '&mi_res_id=%2Fkubelet'];

    test('a pod with no PodIdentity, or an address that is no pod, gets no token by any spelling or hint', async () => {
      for (const from of [POD_B, STRANGER]) {
        for (const spelling of TOKEN_SPELLINGS) {
          for (const hint of HINTS) {
            const res = await get(spelling + QUERY + hint, { from });
            assert.notEqual(res.status, 200, `${from} ${spelling}${hint}: ${JSON.stringify(res.body)}`);
            assert.equal(res.body['access_token'], undefined);
            assert.deepEqual(Object.keys(res.body).sort(), ['error', 'error_description'], `${spelling}: an IMDS-shaped error`);
          }
        }
      }
      assert.deepEqual(upstreamSeen, [], 'nothing reached the node IMDS');
      assert.equal(federated.calls.length + nodeIssuer.calls.length, 0);
    });

    test('a pod with a PodIdentity gets its own identity by every spelling, and never another by a hint', async () => {
      for (const spelling of TOKEN_SPELLINGS) {
        const own = await get(spelling + QUERY);
        assert.equal(own.status, 200, `${spelling}: ${JSON.stringify(own.body)}`);
        assert.equal(own.body['client_id'], 'reader-client');
        for (const hint of HINTS.slice(1)) {
          const other = await get(spelling + QUERY + hint);
          assert.equal(other.status, 400, `${spelling}${hint}`);
          assert.equal(other.body['access_token'], undefined);
        }
      }
      assert.deepEqual(upstreamSeen, [], 'nothing reached the node IMDS');
    });

    test('nothing else under /metadata/identity is answered or forwarded, however spelled', async () => {
      for (const path of ['/metadata/identity', '/metadata/identity/info', '/metadata/%69dentity/info', '/metadata/identity/oauth2', '/metadata/identity/oauth2/token/extra', '/metadata/instance/../IDENTITY/info']) {
        const res = await get(path + QUERY, { from: POD_B });
        assert.equal(res.status, 404, path);
        assert.equal(res.body['error'], 'not_found');
      }
      assert.deepEqual(upstreamSeen, []);
    });

    test('malformed or double-encoded targets are IMDS 400s, never forwarded', async () => {
      const unicodeFolds = ['/metadata/%C4%B0dentity/oauth2/token', '/metadata/identity/oauth2/to%E2%84%AAen', '/metadata/in%C5%BFtance', '/metadata%c0%afidentity/oauth2/token', '/metadata/identity%e0%80%afoauth2/token'];
      const separators = ['/metadata/identity;/oauth2/token', '/metadata/identity/oauth2/token%3B', '/metadata/identity/oauth2/token%23', '/metadata/identity/oauth2/token%20', '/metadata/instance/compute%3B/userData'];
      for (const path of ['/metadata/identity/oauth2/tok%2565n', '/metadata/%zzinstance', '/metadata/instance%3Fapi-version=1', '/metadata/instance%00', '/metadata/instance;x', ...unicodeFolds, ...separators]) {
        const res = await get(path + QUERY, { from: POD_B });
        assert.equal(res.status, 400, path);
        assert.equal(res.body['error'], 'invalid_request');
      }
      assert.deepEqual(upstreamSeen, []);
    });
  });

  describe('metadata proxy allow-list', () => {
    test('allowed paths are forwarded in canonical form (decoded, dot segments resolved, case kept)', async () => {
      const cases: [string, string][] = [
        ['/metadata/instance?api-version=2021-02-01', '/metadata/instance?api-version=2021-02-01'],
        ['/metadata/instance/compute/vmId?api-version=2021-02-01&format=text', '/metadata/instance/compute/vmId?api-version=2021-02-01&format=text'],
        ['/metadata//instance/./compute/%76mId?api-version=2021-02-01', '/metadata/instance/compute/vmId?api-version=2021-02-01'],
        ['/metadata/versions', '/metadata/versions'],
        ['/metadata/loadbalancer?api-version=2020-10-01', '/metadata/loadbalancer?api-version=2020-10-01'],
        ['/metadata/scheduledevents?api-version=2020-07-01', '/metadata/scheduledevents?api-version=2020-07-01'],
      ];
      for (const [asked, forwarded] of cases) {
        upstreamSeen = [];
        const res = await get(asked, { from: POD_B });
        assert.equal(res.status, 200, asked);
        assert.deepEqual(upstreamSeen, [forwarded], asked);
      }
    });

    test('encoded separators and backslashes are refused on proxied paths', async () => {
      for (const path of ['/metadata/instance%2Fcompute', '/metadata/instance%2fcompute', '/metadata/instance\\compute', '/metadata/instance%5Ccompute']) {
        const res = await get(`${path}?api-version=2021-02-01`, { from: POD_B });
        assert.equal(res.status, 400, path);
        assert.match(res.body['error_description'] ?? '', /encoded separator/);
      }
      assert.deepEqual(upstreamSeen, []);
    });

    test('paths off the list are refused: attested document, user data, unknown categories', async () => {
      for (const path of ['/metadata/attested/document', '/metadata/instance/compute/userData', '/metadata/instance/compute/customData', '/metadata/INSTANCE/compute/userdata', '/metadata', '/metadata/somethingnew', '/metadata/versions/x']) {
        const res = await get(`${path}?api-version=2021-02-01`, { from: POD_B });
        assert.equal(res.status, 403, path);
        assert.equal(res.body['error'], 'forbidden');
      }
      assert.deepEqual(upstreamSeen, []);
    });

    test('attack: user data through a segment an upstream may trim (trailing dots, ~, -, _)', async () => {
      // A server that reads paths the Windows way drops trailing dots: `compute/userData.` would be userData,
      // and `compute./` the compute document the agent did not recognise, so did not redact.
      const paths = [
        '/metadata/instance/compute/userData.',
        '/metadata/instance/compute/userData..',
        '/metadata/instance/compute/userData%2e',
        '/metadata/instance/compute./userData',
        '/metadata/instance/compute.',
        '/metadata/instance/compute..',
        '/metadata/instance/compute/customData.',
        '/metadata/instance/compute/userData~',
        '/metadata/instance/compute/user_Data',
        '/metadata/instance/compute/user-Data',
        '/metadata/instance/.compute',
      ];
      for (const path of paths) {
        const res = await get(`${path}?api-version=2021-02-01&format=text`, { from: POD_B });
        assert.equal(res.status, 403, path);
        assert.equal(res.body['error'], 'forbidden', path);
      }
      assert.deepEqual(upstreamSeen, []);
    });
  });

  describe('attack: request targets and framing other than one origin-form GET', () => {
    const T = '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F';
    const H = 'Host: 169.254.169.254\r\nMetadata: true\r\n';
    const status = (answer: string) => [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

    test('absolute-form, authority-form and * targets are IMDS 400s, never forwarded', async () => {
      for (const target of [`http://169.254.169.254${T}`, 'http://169.254.169.254/metadata/instance?api-version=2021-02-01', '169.254.169.254:80', '*']) {
        const answer = await raw(`GET ${target} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
        assert.deepEqual(status(answer), [400], `${target}: ${answer}`);
        assert.doesNotMatch(answer, /access_token/);
      }
      assert.deepEqual(upstreamSeen, []);
    });

    test('attack: CONNECT (a tunnel toward the node IMDS) gets IMDS’s 405, not a silently dropped connection', async () => {
      for (const target of ['169.254.169.254:80', `${T}`]) {
        const answer = await raw(`CONNECT ${target} HTTP/1.1\r\n${H}\r\n`);
        assert.deepEqual(status(answer), [405], `${target}: ${JSON.stringify(answer)}`);
        assert.match(answer, /\r\nAllow: GET\r\n/);
        const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, string>;
        assert.deepEqual(Object.keys(body).sort(), ['error', 'error_description']);
        assert.equal(body['error'], 'invalid_request');
      }
      assert.deepEqual(upstreamSeen, []);
    });

    test('attack: refused CONNECTs whose client never closes do not hold sockets open', async () => {
      const agentSide = new Promise<Duplex>((resolve) => server.once('connect', (_req: unknown, socket: Duplex) => resolve(socket)));
      const client = connect({ host: '127.0.0.1', port, localAddress: POD_B, allowHalfOpen: true }, () => client.write(`CONNECT 169.254.169.254:80 HTTP/1.1\r\n${H}\r\n`));
      client.on('data', () => {});
      try {
        // The client never ends its side; the agent closes the socket after a short linger.
        const socket = await agentSide;
        if (!socket.destroyed) await new Promise((resolve) => socket.once('close', resolve));
        assert.ok(socket.destroyed);
      } finally {
        client.destroy();
      }
    });

    test('a token request pipelined or smuggled behind a proxied one is answered by the agent, never forwarded', async () => {
      const pipelined = await raw(`GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\n${H}\r\nGET ${T} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.deepEqual(status(pipelined), [200, 400], pipelined);
      const smuggled = await raw(`GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET ${T} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.deepEqual(status(smuggled), [400], smuggled);
      assert.doesNotMatch(pipelined + smuggled, /access_token/);
      assert.deepEqual(upstreamSeen, ['/metadata/instance?api-version=2021-02-01'], 'the node IMDS saw only the allowed request, as the agent wrote it');
    });
  });

  describe('IMDS request strictness', () => {
    test('a repeated query parameter is IMDS’s 400 invalid_request, in any letter case', async () => {
      const cases: [string, string][] = [
        ['&resource=https%3A%2F%2Fother', 'resource'],
        ['&api-version=2019-08-01', 'api-version'],
        ['&client_id=a&client_id=a', 'client_id'],
        ['&object_id=o&object_id=o', 'object_id'],
        ['&msi_res_id=%2Fx&msi_res_id=%2Fx', 'msi_res_id'],
        ['&mi_res_id=%2Fx&mi_res_id=%2Fx', 'mi_res_id'],
        ['&RESOURCE=https%3A%2F%2Fother', 'resource'],
        ['&client_id=a&Client_Id=b', 'client_id'],
      ];
      for (const [extra, name] of cases) {
        const res = await get(TOKEN + extra);
        assert.equal(res.status, 400, extra);
        assert.deepEqual(res.body, { error: 'invalid_request', error_description: `Query parameter '${name}' is specified more than once` });
      }
      assert.equal(federated.calls.length, 0);
    });

    test('a resource written as a scope is answered for its resource: echo, audience and cache key agree', async () => {
      const plain = await get('/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net');
      const scoped = await get('/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net%2F.default');
      assert.equal(scoped.status, 200);
      assert.equal(scoped.body['resource'], 'https://vault.azure.net');
      assert.equal(scoped.body['access_token'], plain.body['access_token'], 'one cache entry for one audience');
      assert.deepEqual(federated.calls.map((c) => c.resource), ['https://vault.azure.net']);
      const bad = await get('/metadata/identity/oauth2/token?api-version=2018-02-01&resource=a%2F.default%20b%2F.default');
      assert.equal(bad.status, 400);
      assert.match(bad.body['error_description'] ?? '', /Invalid resource/);
    });

    test('methods other than GET get IMDS’s 405 with Allow: GET, on every path', async () => {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']) {
        for (const path of [TOKEN, '/metadata/scheduledevents?api-version=2020-07-01', '/metadata/%69dentity/oauth2/token?api-version=2018-02-01&resource=x']) {
          const res = await get(path, { method, from: POD_B, headers: {} });
          assert.equal(res.status, 405, `${method} ${path}`);
          assert.equal(res.headers['allow'], 'GET');
          if (method !== 'HEAD') assert.deepEqual(Object.keys(res.body).sort(), ['error', 'error_description']);
        }
      }
      assert.deepEqual(upstreamSeen, []);
    });
  });

  test('the very same request target from two pods back to back (the parsed-target memo\'s last entry): each pod gets only its own identity', async () => {
    identities.set([podIdentity('reader', 'app', { clientId: 'reader-client' }), podIdentity('writer', 'app', { clientId: 'writer-client' })]);
    const a = await get(TOKEN, { from: POD_A });
    assert.equal(a.body['client_id'], 'reader-client');
    assert.equal((await get(TOKEN, { from: POD_B })).status, 400, 'pod b, which nothing selects, right after pod a asked with the same target');
    changePod(1, { labels: { 'podidentity.dev/identity': 'writer' } });
    const b = await get(TOKEN, { from: POD_B });
    assert.equal(b.body['client_id'], 'writer-client');
    assert.notEqual(b.body['access_token'], a.body['access_token']);
    const again = await get(TOKEN, { from: POD_A });
    assert.equal(again.body['client_id'], 'reader-client');
    assert.equal(again.body['access_token'], a.body['access_token']);
  });

  describe('IMDS exceptions', () => {
    const ADDON = { namespace: 'app', podLabels: { component: 'addon' }, migratedFrom: 'AzurePodIdentityException app/addons' };
    beforeEach(() => {
      exceptionEntries = [ADDON];
      changePod(1, { labels: { component: 'addon' } });
    });

    test('an unselected pod matching an exception is passed through unchanged, never cached', async () => {
      const path = `${TOKEN}&client_id=node-kubelet`;
      for (let i = 0; i < 2; i++) {
        const res = await get(path, { from: POD_B });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, { path, metadata: 'true' }, 'same path and query, Metadata: true, the node IMDS body as is');
      }
      assert.equal(federated.calls.length + nodeIssuer.calls.length, 0);
      assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'exception' }), 2);
      assert.equal(cache.size, 0, 'exception tokens are never cached');
    });

    test('the node IMDS status and Retry-After come back', async () => {
      const res = await get('/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fthrottle', { from: POD_B });
      assert.equal(res.status, 429);
      assert.equal(res.headers['retry-after'], '9');
      assert.deepEqual(res.body, { error: 'throttled' });
    });

    test('label mismatch or another namespace: refused like any unselected pod', async () => {
      changePod(1, { labels: { component: 'addon-2' } });
      assert.equal((await get(TOKEN, { from: POD_B })).status, 400);
      changePod(1, { labels: { component: 'addon' } });
      changePod(1, { namespace: 'other' });
      assert.equal((await get(TOKEN, { from: POD_B })).status, 400);
      assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'exception' }), 0);
    });

    test('a pod a PodIdentity selects never uses the exception, even when no identity matches its hint', async () => {
      changePod(0, { labels: { 'podidentity.dev/identity': 'reader', component: 'addon' } });
      const res = await get(TOKEN);
      assert.equal(res.status, 200);
      assert.equal(res.body['client_id'], 'reader-client');
      const wrongHint = await get(`${TOKEN}&client_id=someone-else`);
      assert.equal(wrongHint.status, 400);
      identities.set([podIdentity('reader', 'app', { ready: false })]);
      assert.equal((await get(TOKEN)).status, 503, 'a not-Ready PodIdentity still owns the pod');
      assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'exception' }), 0);
    });

    test('attack: an exception revoked while the exceptions watch was broken is not honoured from the stale cache (503 + Retry-After until the relist)', async () => {
      assert.equal((await get(TOKEN, { from: POD_B })).status, 200, 'honoured while the watch follows the server');
      exceptionsFresh = false;
      const res = await get(TOKEN, { from: POD_B });
      assert.equal(res.status, 503);
      assert.ok(Number(res.headers['retry-after']) > 0);
      assert.equal(upstreamSeen.length, 1, 'the node IMDS was asked only before the watch broke');
      assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'exception' }), 1);
      exceptionsFresh = true;
      assert.equal((await get(TOKEN, { from: POD_B })).status, 200, 'relisted: the exception (still there) applies again');
    });

    test('unknown source addresses never reach the exception path', async () => {
      assert.equal((await get(TOKEN, { from: STRANGER })).status, 400);
      assert.equal(await counter('podidentity_agent_token_requests_total', { result: 'exception' }), 0);
    });
  });

  describe('attack: a decision remembered on a pod, asked for again on new connections', () => {
    /** One request on a connection of its own (no keep-alive agent): every answer goes through `decide`. */
    const fresh = (path = TOKEN, from = POD_A) =>
      new Promise<{ status: number; body: Record<string, string> }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, agent: false, localAddress: from, headers: { Metadata: 'true' } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, string> }));
        });
        req.on('error', reject);
        req.end();
      });

    test('PodIdentity made not Ready, re-keyed, deleted, or the pod relabelled: the next new connection is decided again', async () => {
      const first = await fresh();
      assert.equal(first.status, 200);
      const again = await fresh();
      assert.equal(again.body['access_token'], first.body['access_token'], 'a new connection is answered from the cache');
      assert.equal(federated.calls.length, 1);
      identities.set([podIdentity('reader', 'app', { clientId: 'reader-client', ready: false })]);
      assert.equal((await fresh()).status, 503, 'not Ready: never the remembered decision');
      identities.set([podIdentity('reader', 'app', { clientId: 'other-client' })]);
      const moved = await fresh();
      assert.equal(moved.body['client_id'], 'other-client');
      assert.notEqual(moved.body['access_token'], first.body['access_token'], 'another client id: its own token');
      identities.set([podIdentity('reader', 'app', { clientId: 'reader-client' })]);
      assert.equal((await fresh()).body['access_token'], first.body['access_token'], 'back as it was: the cached token again');
      identities.set([]);
      assert.equal((await fresh()).status, 400, 'deleted');
      identities.set([podIdentity('reader', 'app', { clientId: 'reader-client' })]);
      changePod(0, { labels: {} });
      assert.equal((await fresh()).status, 400, 'relabelled out of the selector');
    });

    test('relabelled out of the selector while the watch cache is behind: the verification read decides, not what was kept on the cached pod', async () => {
      assert.equal((await fresh()).status, 200);
      assert.equal((await fresh()).status, 200, 'the decision is now kept on the cached pod');
      const reads = pods.reads;
      pods.server = [pod('a', POD_A, { labels: {} }), pods.server[1]!];
      assert.equal((await fresh()).status, 400, 'the API server says unbound: refused though the cache still binds it');
      assert.ok(pods.reads > reads, 'the new connection was verified by a read');
    });

    test('an address the pod gave up and another pod took: the new owner gets its own decision, never the previous owner\'s', async () => {
      const SECOND = '127.0.0.14';
      pods.cached = [pod('a', POD_A, { ips: [POD_A, SECOND] }), pods.cached[1]!];
      pods.server = pods.cached;
      const v1 = await fresh(TOKEN, SECOND);
      assert.equal(v1.status, 200, 'the pod at its second address');
      assert.equal((await fresh(TOKEN, POD_A)).body['access_token'], v1.body['access_token'], 'the same pod at its first: the same principal');
      pods.cached = [pod('a', POD_A), pods.cached[1]!, pod('c', SECOND, { labels: {} })];
      pods.server = pods.cached;
      assert.equal((await fresh(TOKEN, SECOND)).status, 400, 'pod c, which no PodIdentity selects, holds the address now');
      assert.equal((await fresh(TOKEN, POD_A)).status, 200);
    });
  });

  describe('IMDS exceptions off (no --exceptions-configmap)', () => {
    before(() => (withExceptions = false));
    after(() => (withExceptions = true));
    test('a pod matching what would be an exception is refused', async () => {
      exceptionEntries = [{ namespace: 'app', podLabels: { component: 'addon' } }];
      changePod(1, { labels: { component: 'addon' } });
      assert.equal((await get(TOKEN, { from: POD_B })).status, 400);
    });
  });
});

