/**
 * What a reconcile of a new PodIdentity waits for: the finalizer patch runs beside the identity plan's reads
 * (never after, never later than the first Azure write), and Events never hold or fail a reconcile.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FINALIZER, type PodIdentity } from '../../lib/api/types.js';
import { waitFor } from '../../dev/support/wait.js';
import { identityResourceId } from '../azure/ids.js';
import { BackgroundEventSink } from '../runtime/event-sink.js';
import { harness, namespacePolicy, SUB } from '../testing/podidentity-harness.js';
import type { World } from '../testing/podidentity-harness.js';
import { defaultIdentityName, MANAGED_BY, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE } from './names.js';

const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;
const allowReader = namespacePolicy('all', undefined, { allowedRoles: ['Reader'], allowedScopes: [RG('data')], allowedExistingIdentities: [`${RG('shared')}/**`] });
const READS = new Set(['identities.get', 'federatedCredentials.list', 'roleAssignments.list', 'roleDefinitions.resolve', 'scaleSets.get', 'managedClusters.get']);
const writesIn = (calls: readonly string[]) => calls.filter((c) => !READS.has(c));
const readyOf = (pid: PodIdentity | undefined) => pid?.status?.conditions?.find((c) => c.type === 'Ready');

/** A new Federated PodIdentity with one role, as the bench applies them. */
function newPodIdentity(world: World, name = 'web'): string {
  world.create('team', name, { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
  return `team/${name}`;
}

/** Replaces the world's finalizer write with one that waits until released, and notes what Azure saw when it started. */
function holdFinalizer(world: World, azure: { calls: string[] }) {
  const real = world.addFinalizer.bind(world);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const seen: { started?: string[] } = {};
  world.addFinalizer = async (pid, f) => {
    seen.started = [...azure.calls];
    await gate;
    return real(pid, f);
  };
  return { release, seen };
}

describe('the reconcile critical path of a new PodIdentity', () => {
  it('sends the finalizer patch while the identity plan is still reading Azure', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowReader];
    const key = newPodIdentity(world);
    const read = azure.hold('identities.get');
    let finalizerAt: string[] | undefined;
    const real = world.addFinalizer.bind(world);
    world.addFinalizer = async (pid, f) => {
      finalizerAt = [...azure.calls];
      return real(pid, f);
    };
    const done = reconciler.reconcile(key);
    // The identity GET is held open: the finalizer must go out anyway, beside it, not after it.
    await waitFor('the finalizer patch while the identity GET is open', () => finalizerAt, { timeoutMs: 2000, intervalMs: 5 });
    assert.deepEqual(writesIn(azure.calls), [], 'no Azure write while the plan reads');
    assert.deepEqual(world.pids.get(key)!.metadata.finalizers, [FINALIZER]);
    read.release();
    await done;
    assert.equal(readyOf(world.pids.get(key))?.status, 'True');
  });

  it('makes no Azure write until the finalizer is on the object', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowReader];
    const key = newPodIdentity(world);
    const held = holdFinalizer(world, azure);
    const done = reconciler.reconcile(key);
    await waitFor('the identity plan read', () => azure.callsOf('identities.get') === 1 && held.seen.started, { timeoutMs: 2000, intervalMs: 5 });
    // Let the plan's read finish and anything that would follow it run: nothing may be written yet.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(writesIn(azure.calls), [], 'no Azure write before the finalizer patch completes');
    held.release();
    await done;
    assert.deepEqual(world.pids.get(key)!.metadata.finalizers, [FINALIZER]);
    assert.ok(writesIn(azure.calls).includes('identities.createOrUpdate'));
    assert.equal(readyOf(world.pids.get(key))?.status, 'True');
  });

  it('a finalizer patch that fails (409) fails the reconcile with no Azure write, though the plan read', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowReader];
    const key = newPodIdentity(world);
    world.addFinalizer = async () => {
      throw Object.assign(new Error('conflict'), { code: 409 });
    };
    await assert.rejects(reconciler.reconcile(key), /conflict/);
    assert.equal(azure.callsOf('identities.get'), 1);
    assert.deepEqual(writesIn(azure.calls), []);
  });

  it('a refused plan may leave the finalizer on the object; deleting that PodIdentity completes and leaves Azure alone', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowReader];
    // Someone else's identity under this PodIdentity's default name: the plan refuses it.
    const foreign = azure.seedIdentity(identityResourceId(SUB, 'pods', defaultIdentityName('team', 'web')), { [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: 'other', [TAG_NAME]: 'thing' });
    const taken = newPodIdentity(world);
    // And an adopted identity that does not exist.
    world.create('team', 'gone', { identity: { existing: { resourceId: `${RG('shared')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/gone` } } });
    const keys = [taken, 'team/gone'];
    for (const k of keys) {
      await reconciler.reconcile(k);
      const pid = world.pids.get(k)!;
      assert.equal(readyOf(pid)?.status, 'False', k);
      assert.deepEqual(pid.metadata.finalizers, [FINALIZER], `${k}: the finalizer went out beside the plan`);
    }
    const writes = writesIn(azure.calls).length;
    for (const k of keys) {
      world.delete(k);
      assert.equal(await reconciler.reconcile(k), undefined, `${k}: finalize needs no retry`);
      assert.equal(world.pids.has(k), false, `${k}: deletion completed`);
    }
    assert.equal(writesIn(azure.calls).length, writes, 'no Azure write while finalizing a refused PodIdentity');
    assert.equal(azure.identitiesById.get(foreign.id.toLowerCase())?.tags[TAG_NAME], 'thing', 'the foreign identity is untouched');
  });

  it('releases its worker after the last Azure call and before the status write', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowReader];
    const key = newPodIdentity(world);
    let atRelease: { calls: string[]; patches: number } | undefined;
    await reconciler.reconcile(key, undefined, () => (atRelease ??= { calls: [...azure.calls], patches: world.statusPatches }));
    assert.ok(atRelease, 'the worker was released');
    assert.deepEqual(atRelease.calls, azure.calls, 'no Azure call after the release');
    assert.ok(writesIn(atRelease.calls).includes('federatedCredentials.createOrUpdate') && writesIn(atRelease.calls).includes('roleAssignments.create'));
    assert.equal(atRelease.patches, 0, 'the status write comes after the release');
    assert.equal(world.statusPatches, 1);
    assert.equal(readyOf(world.pids.get(key))?.status, 'True');
  });

  it('never waits on an Event: a writer whose Event write hangs does not hold the reconcile', async () => {
    const { world, reconciler } = harness();
    world.policyList = [allowReader];
    const key = newPodIdentity(world);
    let asked = 0;
    world.event = () => {
      asked++;
      return new Promise<void>(() => {}); // an API server that never answers
    };
    const outcome = await Promise.race([reconciler.reconcile(key).then(() => 'done'), new Promise((r) => setTimeout(() => r('held'), 2000).unref())]);
    assert.equal(outcome, 'done');
    assert.ok(asked >= 1, 'the Ready Event was asked for');
    assert.equal(readyOf(world.pids.get(key))?.status, 'True');
  });

  it('Events behind the bounded queue that hang or fail neither delay nor fail reconciles; overflow is dropped and counted', async () => {
    const { world, reconciler } = harness();
    world.policyList = [allowReader];
    let posts = 0;
    let counted = 0;
    // The first posts hang (an API server that stopped answering), the rest fail: the queue fills and drops.
    const sink = new BackgroundEventSink(
      (_pid: PodIdentity) => {
        posts++;
        return posts <= 2 ? new Promise<void>(() => {}) : Promise.reject(new Error('api server down'));
      },
      { concurrency: 2, maxPending: 3, onDrop: () => counted++ },
    );
    world.event = (pid) => sink.emit(pid);
    const keys = Array.from({ length: 8 }, (_, i) => newPodIdentity(world, `web-${i}`));
    const outcome = await Promise.race([Promise.all(keys.map((k) => reconciler.reconcile(k))).then(() => 'done'), new Promise((r) => setTimeout(() => r('held'), 5000).unref())]);
    assert.equal(outcome, 'done');
    for (const k of keys) assert.equal(readyOf(world.pids.get(k))?.status, 'True', k);
    // 8 Ready Events: 2 posted (and stuck), 3 waiting, 3 dropped.
    assert.equal(posts, 2);
    assert.equal(counted, 3);
    assert.equal(sink.dropped, 3);
    assert.equal(await sink.drain(50), false, 'a stuck post bounds the drain, it does not hang shutdown');
  });
});
