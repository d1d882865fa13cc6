import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
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
  return { pods, identities, attributor: new Attributor('node-1', pods, identities) };
}

describe('attribution', () => {
  test('IPv4-mapped IPv6 peers are normalised', () => {
    assert.equal(normaliseAddress('::ffff:10.0.0.5'), '10.0.0.5');
    assert.equal(normaliseAddress('fd00::5'), 'fd00::5');
    assert.equal(normaliseAddress(undefined), '');
  });

  test('a new connection is verified by the API server once, then its requests use the cache', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('a', '10.0.0.5', { ips: ['10.0.0.5', 'fd00::5'] })];
    const conn = peer('::ffff:10.0.0.5');
    assert.deepEqual(await attributor.attribute(conn), { kind: 'pod', pod: pods.cached[0] });
    assert.deepEqual(await attributor.attribute(conn), { kind: 'pod', pod: pods.cached[0] });
    assert.equal(pods.readThroughs, 1);
    assert.equal((await attributor.attribute(peer('fd00::5'))).kind, 'pod', 'a secondary podIPs entry counts');
    assert.equal(pods.readThroughs, 2);
  });

  test('IP reuse faster than the watch: a new connection gets the new holder, not the deleted pod the cache still shows', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('deleted-meanwhile', '10.0.0.5')];
    pods.server = [pod('new-holder', '10.0.0.5')];
    const who = await attributor.attribute(peer('10.0.0.5'));
    assert.equal(who.kind === 'pod' && who.pod.name, 'new-holder');
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
    const before = pods.readThroughs;
    assert.equal((await attributor.attribute(conn)).kind, 'pod');
    assert.equal(pods.readThroughs, before + 1);
  });

  test('while the pod watch is broken and the API server does not answer, requests fail closed with 503', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('a', '10.0.0.5')];
    pods.fresh = false;
    pods.readThrough = async () => {
      throw new Error('connect ECONNREFUSED');
    };
    await assert.rejects(attributor.attribute(peer('10.0.0.5')), (err: { status?: number; headers?: Record<string, string> }) => {
      assert.equal(err.status, 503);
      assert.equal(err.headers?.['Retry-After'], '5');
      return true;
    });
  });

  test('with a live watch, an API server that does not answer leaves the cache in charge', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('a', '10.0.0.5')];
    pods.readThrough = async () => {
      throw new Error('connect ECONNREFUSED');
    };
    const who = await attributor.attribute(peer('10.0.0.5'));
    assert.equal(who.kind === 'pod' && who.pod.name, 'a');
  });

  test('unknown IP: unknown, and the connection is not pinned (the next request asks again)', async () => {
    const { pods, attributor } = setup();
    const conn = peer('10.0.0.9');
    assert.deepEqual(await attributor.attribute(conn), { kind: 'unknown', ip: '10.0.0.9' });
    pods.server = [pod('late-status', '10.0.0.9')];
    assert.equal((await attributor.attribute(conn)).kind, 'pod');
    assert.equal(pods.readThroughs, 2);
  });

  test('connections opened before a read share it; a connection opened after it started gets its own', async () => {
    const { pods, attributor } = setup();
    pods.server = [pod('new', '10.0.0.7')];
    let release!: () => void;
    pods.gate = new Promise<void>((r) => (release = r));
    const [c1, c2, late] = [peer('10.0.0.7'), peer('10.0.0.7'), peer('10.0.0.7')];
    attributor.connectionOpened(c1);
    attributor.connectionOpened(c2);
    const first = Promise.all([attributor.attribute(c1), attributor.attribute(c2)]);
    await waitUntil(() => pods.readThroughs === 1);
    attributor.connectionOpened(late);
    const third = attributor.attribute(late);
    await waitUntil(() => pods.readThroughs === 2);
    release();
    const [a, b] = await first;
    assert.equal(a.kind, 'pod');
    assert.equal(b.kind, 'pod');
    assert.equal((await third).kind, 'pod');
    assert.equal(pods.readThroughs, 2);
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
