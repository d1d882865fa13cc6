import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { waitFor } from '../../dev/support/wait.js';
import { LeaderElector } from '../../operator/runtime/leader.js';

let cluster: TestCluster;

before(async () => {
  cluster = await testCluster();
});

const timing = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 250 };

/** Tracks who leads, and fails if two candidates ever lead at once. */
class Tracker {
  readonly leading = new Set<string>();
  maxConcurrent = 0;
  starts: { id: string; at: number }[] = [];

  /** The lease holder each candidate last observed. */
  readonly holderSeenBy = new Map<string, string>();

  callbacks(id: string) {
    return {
      onNewLeader: (holder: string) => this.holderSeenBy.set(id, holder),
      onStartedLeading: (signal: AbortSignal) =>
        new Promise<void>((resolve) => {
          this.leading.add(id);
          this.starts.push({ id, at: Date.now() });
          this.maxConcurrent = Math.max(this.maxConcurrent, this.leading.size);
          signal.addEventListener('abort', () => {
            this.leading.delete(id);
            resolve();
          });
        }),
    };
  }

  leader(): string | undefined {
    return this.leading.size === 1 ? [...this.leading][0] : undefined;
  }
}

/** A Lease client whose network can be cut, to stand in for a killed or partitioned replica. */
function severable(api: CoordinationV1Api) {
  const state = { severed: false };
  const proxy = new Proxy(api, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (state.severed) return Promise.reject(Object.assign(new Error('connection refused (severed)'), { code: 0 }));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { api: proxy, state };
}

function candidate(ns: string, id: string, tracker: Tracker) {
  const link = severable(cluster.kc.makeApiClient(CoordinationV1Api));
  const elector = new LeaderElector({ api: link.api, namespace: ns, name: 'operator-lock', identity: id, ...timing, ...tracker.callbacks(id) });
  const ctl = new AbortController();
  const done = elector.run(ctl.signal);
  return { id, elector, link, stop: () => ctl.abort(), done };
}

test('two candidates: exactly one leads; a cut-off leader steps down and the other takes over within the lease duration', async () => {
  const ns = await cluster.namespace('le');
  const tracker = new Tracker();
  const a = candidate(ns, 'a', tracker);
  const b = candidate(ns, 'b', tracker);
  try {
    const first = await waitFor('a leader', () => tracker.leader(), { timeoutMs: 10_000 });
    await waitFor('both know the leader', () => a.elector.leadershipKnown() && b.elector.leadershipKnown());
    // Let several renew periods pass: the follower must never win while the leader renews.
    const lease = cluster.kc.makeApiClient(CoordinationV1Api);
    const rv0 = (await lease.readNamespacedLease({ name: 'operator-lock', namespace: ns })).metadata?.resourceVersion;
    await waitFor('the leader renewed', async () => (await lease.readNamespacedLease({ name: 'operator-lock', namespace: ns })).metadata?.resourceVersion !== rv0);
    assert.equal(tracker.leader(), first);
    assert.equal(tracker.maxConcurrent, 1);

    const [leader, follower] = first === 'a' ? [a, b] : [b, a];
    assert.equal(leader.elector.state(), 'leader');
    assert.equal(follower.elector.state(), 'follower');
    const cutAt = Date.now();
    leader.link.state.severed = true;
    await waitFor('the follower takes over', () => follower.elector.state() === 'leader', { timeoutMs: 10_000 });
    const takeoverMs = Date.now() - cutAt;
    assert.ok(takeoverMs <= timing.leaseDurationMs + 2 * timing.retryPeriodMs + 500, `took over after ${takeoverMs} ms`);
    await waitFor('the cut-off leader stepped down', () => leader.elector.state() !== 'leader');
    assert.equal(tracker.maxConcurrent, 1, 'never two leaders at once');
    // The old leader keeps campaigning (no crash) and rejoins as a follower once reconnected.
    leader.link.state.severed = false;
    await waitFor('old leader sees the new holder', () => tracker.holderSeenBy.get(leader.id) === follower.id);
    assert.equal(leader.elector.state(), 'follower');
  } finally {
    a.stop();
    b.stop();
    await Promise.all([a.done, b.done]);
  }
});

test('release on shutdown hands over at once, well inside the lease duration', async () => {
  const ns = await cluster.namespace('le-release');
  const tracker = new Tracker();
  const a = candidate(ns, 'a', tracker);
  const first = await waitFor('a leads', () => tracker.leader(), { timeoutMs: 10_000 });
  assert.equal(first, 'a');
  const b = candidate(ns, 'b', tracker);
  try {
    await waitFor('b follows', () => b.elector.state() === 'follower');
    const stoppedAt = Date.now();
    a.stop();
    await a.done;
    const lease = await cluster.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'operator-lock', namespace: ns });
    assert.ok(lease.spec?.holderIdentity === '' || lease.spec?.holderIdentity === 'b', 'a released the lease');
    await waitFor('b leads', () => b.elector.state() === 'leader', { timeoutMs: 10_000 });
    const handoverMs = Date.now() - stoppedAt;
    assert.ok(handoverMs < timing.leaseDurationMs / 2, `hand-over took ${handoverMs} ms`);
    assert.equal(tracker.maxConcurrent, 1);
  } finally {
    b.stop();
    await b.done;
  }
});
