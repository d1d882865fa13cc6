import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import { LeaderElector } from './leader.js';

/** An in-memory Lease endpoint with resourceVersion preconditions, like the API server's. */
function fakeLeases() {
  let stored: V1Lease | undefined;
  let rv = 0;
  const err = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });
  const api = {
    async readNamespacedLease() {
      if (!stored) throw err(404);
      return structuredClone(stored);
    },
    async createNamespacedLease({ body }: { body: V1Lease }) {
      if (stored) throw err(409);
      stored = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return structuredClone(stored);
    },
    async replaceNamespacedLease({ body }: { body: V1Lease }) {
      if (!stored) throw err(404);
      if (body.metadata?.resourceVersion !== stored.metadata?.resourceVersion) throw err(409);
      stored = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return structuredClone(stored);
    },
  };
  return { api: api as unknown as CoordinationV1Api, current: () => stored };
}

const timing = { leaseDurationMs: 400, renewDeadlineMs: 250, retryPeriodMs: 40 };

test('exactly one of several candidates leads; release hands over; the new holder is recorded', async () => {
  const leases = fakeLeases();
  const leading = new Set<string>();
  let maxConcurrent = 0;
  const make = (id: string) => {
    const ctl = new AbortController();
    const elector = new LeaderElector({
      api: leases.api,
      namespace: 'ns',
      name: 'lock',
      identity: id,
      ...timing,
      onStartedLeading: (signal) =>
        new Promise<void>((resolve) => {
          leading.add(id);
          maxConcurrent = Math.max(maxConcurrent, leading.size);
          signal.addEventListener('abort', () => {
            leading.delete(id);
            resolve();
          });
        }),
    });
    return { id, elector, ctl, done: elector.run(ctl.signal) };
  };
  const all = ['a', 'b', 'c'].map(make);
  const until = async (check: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error('timeout');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  await until(() => leading.size === 1 && all.every((c) => c.elector.leadershipKnown()));
  await new Promise((r) => setTimeout(r, 300)); // several renew periods
  assert.equal(maxConcurrent, 1);
  const first = all.find((c) => c.elector.state() === 'leader')!;
  assert.equal(leases.current()?.spec?.holderIdentity, first.id);
  first.ctl.abort();
  await first.done;
  const stoppedAt = Date.now();
  await until(() => leading.size === 1);
  assert.ok(Date.now() - stoppedAt < timing.leaseDurationMs, 'released lease is taken over before it would expire');
  const second = all.find((c) => c.elector.state() === 'leader')!;
  assert.notEqual(second.id, first.id);
  assert.equal(leases.current()?.spec?.leaseTransitions, 1);
  for (const c of all) c.ctl.abort();
  await Promise.all(all.map((c) => c.done));
  assert.equal(maxConcurrent, 1);
  assert.equal(leases.current()?.spec?.holderIdentity, '', 'the last leader released on shutdown');
});

test('renewDeadline must be shorter than the lease duration', () => {
  assert.throws(() => new LeaderElector({ api: fakeLeases().api, namespace: 'n', name: 'l', identity: 'x', leaseDurationMs: 1000, renewDeadlineMs: 1000, onStartedLeading: () => {} }));
});
