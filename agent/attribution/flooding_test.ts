/**
 * Issue 11 §6: a source address must not be able to turn connections into unbounded API server reads, nor
 * a failing read into a stale answer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeIdentities, FakePods, pod } from '../testing/fakes.js';
import { Attributor } from './attributor.js';

function peer(remoteAddress: string): { remoteAddress: string } {
  return { remoteAddress };
}

describe('attribution under flooding', () => {
  test('flood from an address no pod of this node holds: no API server read at all', async () => {
    const pods = new FakePods();
    pods.cached = pods.server = [pod('a', '10.0.0.5')];
    const attributor = new Attributor('node-1', pods, new FakeIdentities());
    const answers = await Promise.all(Array.from({ length: 50 }, () => attributor.attribute(peer('10.9.9.9'))));
    for (const a of answers) assert.equal(a.kind, 'unknown');
    assert.equal(pods.reads, 0, 'an address with no candidate pod in the cache costs the API server nothing');
  });

  test('flood from the address of a pod deleted a moment ago: at most one read, however many connections', async () => {
    const pods = new FakePods();
    // The watch has not delivered the delete yet; the API server no longer has the pod.
    pods.cached = [pod('deleted', '10.0.0.5')];
    pods.server = [];
    const attributor = new Attributor('node-1', pods, new FakeIdentities());
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 5 }, () => attributor.attribute(peer('10.0.0.5'))));
      for (const a of answers) assert.equal(a.kind, 'unknown', `round ${round}: nobody gets the deleted pod's identity`);
    }
    assert.equal(pods.reads, 1, 'a pod found gone once is never read again');
  });

  test('flood of new connections from one pod: API server reads per source address are bounded', async () => {
    const pods = new FakePods();
    pods.cached = pods.server = [pod('a', '10.0.0.5')];
    const attributor = new Attributor('node-1', pods, new FakeIdentities());
    const started = performance.now();
    let served = 0;
    for (let i = 0; i < 300; i++) {
      try {
        if ((await attributor.attribute(peer('10.0.0.5'))).kind === 'pod') served++;
      } catch {
        // refused past the budget: that is the bound working
      }
    }
    const elapsedS = (performance.now() - started) / 1000;
    // The default budget: 100 reads per second per source address (burst 100).
    assert.ok(pods.reads <= 100 + Math.ceil(100 * elapsedS), `${pods.reads} reads in ${elapsedS.toFixed(2)} s for 300 connections`);
    assert.ok(served > 0, 'the pod is still served within its budget');
  });

  test('stale fallback: a verification read that fails gives 503 + Retry-After, never the pod the watch cache still shows', async () => {
    const pods = new FakePods();
    // The address was reused at once: the cache still shows the deleted previous owner.
    pods.cached = [pod('deleted-previous-owner', '10.0.0.5')];
    pods.server = [pod('new-owner', '10.0.0.5')];
    pods.readError = new Error('connect ECONNREFUSED');
    const attributor = new Attributor('node-1', pods, new FakeIdentities());
    await assert.rejects(attributor.attribute(peer('10.0.0.5')), (err: { status?: number; headers?: Record<string, string> }) => {
      assert.equal(err.status, 503);
      assert.ok(Number(err.headers?.['Retry-After']) >= 1);
      return true;
    });
  });

  test('stale fallback: a verification read that times out gives 503, never the watch cache', async () => {
    const pods = new FakePods();
    pods.cached = [pod('deleted-previous-owner', '10.0.0.5')];
    pods.gate = new Promise(() => undefined); // the API server never answers
    pods.readError = Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' });
    const attributor = new Attributor('node-1', pods, new FakeIdentities());
    const outcome = await Promise.race([
      attributor.attribute(peer('10.0.0.5')).then(
        (a) => `attributed: ${a.kind}`,
        (err: { status?: number }) => `refused ${err.status}`,
      ),
      new Promise<string>((r) => setTimeout(() => r('no answer within 3 s'), 3000).unref()),
    ]);
    assert.equal(outcome, 'refused 503');
  });
});

describe('attribution bookkeeping under flooding', () => {
  test('read-queue leak: connections refused for want of read budget leave no per-pod state behind', async () => {
    const pods = new FakePods();
    const many = Array.from({ length: 50 }, (_, i) => pod(`p${i}`, `10.0.1.${i + 1}`));
    pods.cached = pods.server = many;
    // One read for the whole agent per minute: every pod but the first is refused its verification.
    const attributor = new Attributor('node-1', pods, new FakeIdentities(), { catchUpMs: 20, readBudget: { perSource: 100, total: 1, windowMs: 60_000 } });
    const results = await Promise.allSettled(many.map((p) => attributor.attribute(peer(p.ips[0]!))));
    assert.equal(results.filter((r) => r.status === 'rejected').length, many.length - 1, 'past the budget, refused');
    // Let the refusals' bookkeeping settle (promise callbacks only; no timer involved).
    await new Promise((resolve) => setImmediate(resolve));
    const queues = (attributor as unknown as { reads: Map<string, unknown> }).reads;
    assert.equal(queues.size, 0, `${queues.size} read queues kept for pods that were never read`);
  });
});
