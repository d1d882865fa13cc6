import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PodInfo } from './types.js';
import { FakeIdentities, FakePods, pod, podIdentity } from '../testing/fakes.js';
import { Attributor, normaliseAddress } from './attributor.js';

/** A connection: attribution pins by the socket object, so each call site makes its own. */
function peer(remoteAddress: string): { remoteAddress: string } {
  return { remoteAddress };
}

async function waitUntil(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setImmediate(r));
  }
}

function setup() {
  const pods = new FakePods();
  const identities = new FakeIdentities();
  return { pods, identities, attributor: new Attributor('node-1', pods, identities, { catchUpMs: 100 }) };
}

describe('attribution', () => {
  test('a read that agrees with the cache answers with the cached pod; a read that shows a change answers with the read', async () => {
    const { pods, attributor } = setup();
    const cached = pod('a', '10.0.0.5');
    pods.cached = [cached];
    pods.server = [pod('a', '10.0.0.5')];
    const first = await attributor.attribute(peer('10.0.0.5'));
    assert.equal(first.kind === 'pod' && first.pod, cached, 'the same pod: what was derived from the cached object is found again');
    const relabelled = pod('a', '10.0.0.5', { labels: { 'podidentity.dev/identity': 'writer' } });
    pods.server = [relabelled];
    const second = await attributor.attribute(peer('10.0.0.5'));
    assert.equal(second.kind === 'pod' && second.pod, relabelled, 'the API server has newer labels than the cache: they decide');
    const changes: Partial<PodInfo>[] = [{ serviceAccountName: 'other' }, { labels: {} }, { labels: { 'podidentity.dev/identity': 'reader', extra: 'x' } }, { ips: ['10.0.0.5', 'fd00::5'] }];
    for (const change of changes) {
      const changed = pod('a', '10.0.0.5', change);
      pods.server = [changed];
      const who = await attributor.attribute(peer('10.0.0.5'));
      assert.equal(who.kind === 'pod' && who.pod, changed, JSON.stringify(change));
    }
  });

  test('IPv4-mapped IPv6 peers are normalised', () => {
    assert.equal(normaliseAddress('::ffff:10.0.0.5'), '10.0.0.5');
    assert.equal(normaliseAddress('fd00::5'), 'fd00::5');
    assert.equal(normaliseAddress(undefined), '');
  });

  test('a new connection is verified by one read of one pod, then its requests use the cache', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('a', '10.0.0.5', { ips: ['10.0.0.5', 'fd00::5'] })];
    const conn = peer('::ffff:10.0.0.5');
    assert.deepEqual(await attributor.attribute(conn), { kind: 'pod', pod: pods.cached[0] });
    assert.deepEqual(await attributor.attribute(conn), { kind: 'pod', pod: pods.cached[0] });
    assert.equal(pods.reads, 1);
    assert.equal((await attributor.attribute(peer('fd00::5'))).kind, 'pod', 'a secondary podIPs entry counts');
    assert.equal(pods.reads, 2);
  });

  test('IP reuse faster than the watch: the deleted pod the cache still shows is read, found gone, and the connection waits for the new holder', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('deleted-meanwhile', '10.0.0.5')];
    pods.server = [pod('new-holder', '10.0.0.5')];
    const pending = attributor.attribute(peer('10.0.0.5'));
    await waitUntil(() => pods.reads === 1);
    pods.cached = [pod('new-holder', '10.0.0.5')]; // the watch catches up
    const who = await pending;
    assert.equal(who.kind === 'pod' && who.pod.name, 'new-holder');
    assert.equal(pods.reads, 2, 'one read of one pod each: the cost does not depend on the cluster');
  });

  test('IP reuse: the new holder the watch delivers while the old holder is being read is read at once, not after the bound', async () => {
    const pods = new FakePods();
    const attributor = new Attributor('node-1', pods, new FakeIdentities(), { catchUpMs: 5_000 });
    pods.cached = [pod('deleted-meanwhile', '10.0.0.5')];
    pods.server = [pod('new-holder', '10.0.0.5')];
    let release!: () => void;
    pods.gate = new Promise((r) => (release = r));
    const started = performance.now();
    const pending = attributor.attribute(peer('10.0.0.5'));
    await waitUntil(() => pods.reads === 1);
    pods.cached = [pod('new-holder', '10.0.0.5')]; // the watch catches up while the read is in flight
    release();
    const who = await pending;
    assert.equal(who.kind === 'pod' && who.pod.name, 'new-holder');
    assert.ok(performance.now() - started < 2_000, 'no event is missed: the connection did not sit out the bound');
  });

  test('IP reuse and a cache that does not catch up within the bound: nobody gets a token', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('deleted-meanwhile', '10.0.0.5')];
    pods.server = [pod('new-holder', '10.0.0.5')];
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown');
  });

  test('a pod recreated at once with the same name (another UID) never inherits the old pinning or identity', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('web-0', '10.0.0.5', { uid: 'old-uid', labels: { 'podidentity.dev/identity': 'old' } })];
    pods.server = [pod('web-0', '10.0.0.5', { uid: 'new-uid', labels: { 'podidentity.dev/identity': 'new' } })];
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown', 'the name matches but the UID does not: not confirmed');
    const pending = attributor.attribute(peer('10.0.0.5'));
    pods.cached = [...pods.server];
    const who = await pending;
    assert.equal(who.kind === 'pod' && who.pod.uid, 'new-uid');
    assert.equal(who.kind === 'pod' && who.pod.labels['podidentity.dev/identity'], 'new', "the API server's labels, not the cache's");
  });

  test('a pinned connection: a lagging cache defers to the API server, and a pod gone from it is refused', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('new-holder', '10.0.0.5')];
    const conn = peer('10.0.0.5');
    await attributor.attribute(conn);
    pods.cached = [pod('stale', '10.0.0.5')];
    const lagging = await attributor.attribute(conn);
    assert.equal(lagging.kind === 'pod' && lagging.pod.name, 'new-holder');
    pods.cached = pods.server = [pod('someone-else', '10.0.0.5')];
    assert.equal((await attributor.attribute(conn)).kind, 'unknown');
    pods.cached = pods.server = [];
    assert.equal((await attributor.attribute(conn)).kind, 'unknown');
  });

  test('while the pod watch is broken, the API server decides for pinned connections too', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('a', '10.0.0.5')];
    const conn = peer('10.0.0.5');
    await attributor.attribute(conn);
    pods.fresh = false;
    const before = pods.reads;
    assert.equal((await attributor.attribute(conn)).kind, 'pod');
    assert.equal(pods.reads, before + 1);
  });

  test('while the pod watch is broken and the API server does not answer, requests fail closed with 503', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('a', '10.0.0.5')];
    pods.fresh = false;
    pods.readError = new Error('connect ECONNREFUSED');
    await assert.rejects(attributor.attribute(peer('10.0.0.5')), (err: { status?: number; headers?: Record<string, string> }) => {
      assert.equal(err.status, 503);
      assert.ok(Number(err.headers?.['Retry-After']) >= 1);
      return true;
    });
  });

  test('while the pod watch is broken, an address the cache does not know is 503, not "unknown"', async () => {
    const { pods, attributor } = setup();
    pods.fresh = false;
    await assert.rejects(attributor.attribute(peer('10.0.0.9')), (err: { status?: number }) => err.status === 503);
  });

  test('unknown IP: unknown, and the connection is not pinned (the next request asks again)', async () => {
    const { pods, attributor } = setup();
    const conn = peer('10.0.0.9');
    assert.deepEqual(await attributor.attribute(conn), { kind: 'unknown', ip: '10.0.0.9' });
    assert.equal(pods.reads, 0);
    pods.cached = pods.server = [pod('late-status', '10.0.0.9')];
    assert.equal((await attributor.attribute(conn)).kind, 'pod');
    assert.equal(pods.reads, 1);
  });

  test('a new pod the watch delivers while the connection waits is attributed at once', async () => {
    const { pods, attributor } = setup();
    pods.server = [pod('brand-new', '10.0.0.9')];
    const pending = attributor.attribute(peer('10.0.0.9'));
    pods.cached = [...pods.server];
    const who = await pending;
    assert.equal(who.kind === 'pod' && who.pod.name, 'brand-new');
  });

  test('connections opened before a read share it; one opened after it started waits for the next read', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('new', '10.0.0.7')];
    let release!: () => void;
    pods.gate = new Promise<void>((r) => (release = r));
    const [c1, c2, late, later] = [peer('10.0.0.7'), peer('10.0.0.7'), peer('10.0.0.7'), peer('10.0.0.7')];
    attributor.connectionOpened(c1);
    attributor.connectionOpened(c2);
    const first = Promise.all([attributor.attribute(c1), attributor.attribute(c2)]);
    await waitUntil(() => pods.reads === 1);
    attributor.connectionOpened(late);
    attributor.connectionOpened(later);
    const second = Promise.all([attributor.attribute(late), attributor.attribute(later)]);
    await new Promise((r) => setImmediate(r));
    assert.equal(pods.reads, 1, 'at most one read of a pod in flight');
    release();
    for (const a of [...(await first), ...(await second)]) assert.equal(a.kind, 'pod');
    assert.equal(pods.reads, 2, 'the late connections share one read that started after they opened');
  });

  test('an IP claimed by two live pods is ambiguous', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('old', '10.0.0.5'), pod('new', '10.0.0.5', { phase: 'Pending' })];
    const got = await attributor.attribute(peer('10.0.0.5'));
    assert.equal(got.kind, 'ambiguous');
  });

  test('finished pods, other nodes and hostNetwork pods do not count', async () => {
    const { pods, attributor } = setup();
    pods.cached = [
      pod('done', '10.0.0.5', { phase: 'Succeeded' }),
      pod('failed', '10.0.0.5', { phase: 'Failed' }),
      pod('elsewhere', '10.0.0.6', { nodeName: 'node-2' }),
      pod('host', '10.0.0.1', { hostNetwork: true }),
      pod('live', '10.0.0.5'),
    ];
    pods.server = pods.cached;
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind === 'pod', true, 'the one live pod wins over finished ones');
    assert.equal((await attributor.attribute(peer('10.0.0.6'))).kind, 'unknown');
    assert.equal((await attributor.attribute(peer('10.0.0.1'))).kind, 'unknown');
  });

  test('identities: own namespace only, selector must match, deleting ones ignored', () => {
    const { identities, attributor } = setup();
    const deleting = podIdentity('reader', 'app');
    deleting.metadata.deletionTimestamp = '2026-01-01T00:00:00Z';
    identities.set([podIdentity('reader', 'other'), podIdentity('writer', 'app'), podIdentity('reader', 'app')]);
    assert.deepEqual(attributor.identitiesFor(pod('a', '10.0.0.5')).map((p) => `${p.metadata.namespace}/${p.metadata.name}`), ['app/reader']);
    identities.set([deleting]);
    assert.deepEqual(attributor.identitiesFor(pod('a', '10.0.0.5')), []);
  });
});
