import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeIdentities, FakePods, pod, podIdentity } from '../testing/fakes.js';
import { Attributor, normaliseAddress } from './attributor.js';

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

  test('a cached live pod by IP, including a secondary podIPs entry', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('a', '10.0.0.5', { ips: ['10.0.0.5', 'fd00::5'] })];
    assert.deepEqual(await attributor.attribute('::ffff:10.0.0.5'), { kind: 'pod', pod: pods.cached[0] });
    assert.equal((await attributor.attribute('fd00::5')).kind, 'pod');
    assert.equal(pods.readThroughs, 0);
  });

  test('while the pod watch is broken, the API server decides, not the cache (IP reuse after an outage)', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('deleted-meanwhile', '10.0.0.5')];
    pods.server = [pod('new-holder', '10.0.0.5')];
    pods.fresh = false;
    const who = await attributor.attribute('10.0.0.5');
    assert.equal(who.kind === 'pod' && who.pod.name, 'new-holder');
    assert.equal(pods.readThroughs, 1);
  });

  test('while the pod watch is broken and the API server does not answer, requests fail closed with 503', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('a', '10.0.0.5')];
    pods.fresh = false;
    pods.readThrough = async () => {
      throw new Error('connect ECONNREFUSED');
    };
    await assert.rejects(attributor.attribute('10.0.0.5'), (err: { status?: number; headers?: Record<string, string> }) => {
      assert.equal(err.status, 503);
      assert.equal(err.headers?.['Retry-After'], '5');
      return true;
    });
  });

  test('unknown IP → one read-through, then unknown', async () => {
    const { pods, attributor } = setup();
    assert.deepEqual(await attributor.attribute('10.0.0.9'), { kind: 'unknown', ip: '10.0.0.9' });
    assert.equal(pods.readThroughs, 1);
  });

  test('a pod not cached yet is found by the read-through; concurrent callers share it', async () => {
    const { pods, attributor } = setup();
    pods.server = [pod('new', '10.0.0.7')];
    const [a, b] = await Promise.all([attributor.attribute('10.0.0.7'), attributor.attribute('10.0.0.7')]);
    assert.equal(a.kind, 'pod');
    assert.equal(b.kind, 'pod');
    assert.equal(pods.readThroughs, 1);
  });

  test('an IP claimed by two live pods is ambiguous', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('old', '10.0.0.5'), pod('new', '10.0.0.5', { phase: 'Pending' })];
    const got = await attributor.attribute('10.0.0.5');
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
    assert.equal((await attributor.attribute('10.0.0.5')).kind === 'pod', true, 'the one live pod wins over finished ones');
    assert.equal((await attributor.attribute('10.0.0.6')).kind, 'unknown');
    assert.equal((await attributor.attribute('10.0.0.1')).kind, 'unknown');
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
