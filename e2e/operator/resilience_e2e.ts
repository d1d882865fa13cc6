/**
 * The operator under Azure faults, a SIGKILL mid-reconcile, and two replicas with leader election. Each case
 * checks the emulator's state for duplicates and orphans, not just the PodIdentity status.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CoordinationV1Api } from '@kubernetes/client-node';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { applyPolicy, condition, createPodIdentity, deletePodIdentity, deletePolicy, getPodIdentity, operatorEnv, type OperatorEnv } from './harness.js';

describe('operator resilience e2e', () => {
  let env: OperatorEnv;
  const running: ManagedProcess[] = [];
  const policyName = `e2e-res-${randomUUID().slice(0, 8)}`;

  before(async () => {
    env = await operatorEnv({ principalReplicationDelayMs: 1500 });
    await applyPolicy(env, policyName, { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [env.rg('data')] });
  });
  after(async () => {
    await Promise.all(running.map((p) => p.stop()));
    await deletePolicy(env, policyName);
    await env?.emu.stop();
  });

  const start = (name: string, args: string[] = []) => {
    const p = env.startOperator(name, args);
    running.push(p);
    return p;
  };
  const ready = (name: string, procs: ManagedProcess[], timeoutMs = 60_000) =>
    waitFor(`${name} Ready`, async () => {
      const pid = await getPodIdentity(env, name);
      return condition(pid, 'Ready')?.status === 'True' && pid?.status?.observedGeneration === pid?.metadata.generation ? pid : undefined;
    }, { timeoutMs, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n${procs.map((p) => `--- ${p.name} ---\n${p.output().slice(-5000)}`).join('\n')}`);
    });
  const ours = () => env.emu.state.identities().filter((i) => i.tags['podidentity-namespace'] === env.namespace);
  const assignmentsOf = (principalId: string) => env.emu.state.roleAssignments().filter((ra) => ra.principalId === principalId);
  const spec = (sas: string[]) => ({ identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: env.rg('data') }, { role: 'Contributor', scope: env.rg('data') }], serviceAccounts: sas });

  it('converges through 429 with Retry-After, 500s, PrincipalNotFound and latency, without duplicates or hot loops', async () => {
    env.emu.faults.set({ match: { route: 'identities.put' }, status: 429, retryAfterSeconds: 1, times: 1 });
    env.emu.faults.set({ match: { route: 'roleAssignments.put' }, status: 500, times: 2 });
    env.emu.faults.set({ match: { route: 'fic.put' }, latencyMs: 150 });
    env.emu.requests.reset();
    const op = start('op-faults');
    await createPodIdentity(env, 'faulty', spec(['a', 'b', 'c']));
    const pid = await ready('faulty', [op]);
    env.emu.faults.clear();
    const identities = ours().filter((i) => i.tags['podidentity-name'] === 'faulty');
    assert.equal(identities.length, 1);
    assert.equal(assignmentsOf(pid.status!.principalId!).length, 2);
    assert.equal(env.emu.state.federatedCredentials(identities[0]!.id).length, 3);
    const counts = env.emu.requests.counts();
    assert.ok((counts['PUT identities.put'] ?? 0) <= 3, `identity PUTs: ${JSON.stringify(counts)}`);
    // The 429 was honoured: the retry came no sooner than Retry-After.
    const puts = env.emu.requests.log().filter((r) => r.route === 'identities.put');
    assert.ok(puts.length >= 2 && puts[1]!.at - puts[0]!.at >= 900, `retry after ${puts.length >= 2 ? puts[1]!.at - puts[0]!.at : 'n/a'} ms`);
    assert.ok((counts['PUT roleAssignments.put'] ?? 0) < 40, `no hot loop on PrincipalNotFound: ${JSON.stringify(counts)}`);
    await deletePodIdentity(env, 'faulty');
    await waitFor('faulty gone', async () => !(await getPodIdentity(env, 'faulty')), { timeoutMs: 30_000 });
    await op.stop();
    assert.equal(ours().length, 0);
  });

  it('SIGKILL mid-reconcile, then a restart, converges with no orphans or duplicates', async () => {
    env.emu.faults.set({ match: { route: 'fic.put' }, latencyMs: 400 });
    const first = start('op-killed');
    for (const n of ['k1', 'k2', 'k3']) await createPodIdentity(env, n, spec(['x', 'y']));
    await waitFor('some Azure writes in flight', () => env.emu.state.identities().some((i) => i.tags['podidentity-namespace'] === env.namespace), { timeoutMs: 30_000, intervalMs: 20 });
    first.kill('SIGKILL');
    await first.exited;
    env.emu.faults.clear();
    const second = start('op-restarted');
    for (const n of ['k1', 'k2', 'k3']) {
      const pid = await ready(n, [first, second]);
      assert.equal(assignmentsOf(pid.status!.principalId!).length, 2, n);
      assert.equal(env.emu.state.federatedCredentials(pid.status!.resourceId!).length, 2, n);
    }
    assert.equal(ours().length, 3, 'one identity per PodIdentity');
    const principals = new Set(ours().map((i) => i.principalId));
    for (const n of ['k1', 'k2', 'k3']) await deletePodIdentity(env, n);
    await waitFor('all deleted', async () => !(await getPodIdentity(env, 'k1')) && !(await getPodIdentity(env, 'k2')) && !(await getPodIdentity(env, 'k3')), { timeoutMs: 30_000 });
    assert.equal(ours().length, 0, 'no orphan identities');
    assert.deepEqual(env.emu.state.roleAssignments().filter((ra) => principals.has(ra.principalId)), [], 'no orphan role assignments');
    await second.stop();
  });

  it('two replicas with leader election: only the leader writes, and killing it hands over', async () => {
    const lease = `op-${randomUUID().slice(0, 6)}`;
    const args = ['--leader-elect', '--leader-election-name', lease, '--lease-duration', '3s'];
    const a = start('replica-a', args);
    const b = start('replica-b', args);
    await createPodIdentity(env, 'led', spec(['s']));
    await ready('led', [a, b]);
    const wrote = (p: ManagedProcess) => /managed identity created|role assignment ensured/.test(p.output());
    const [leader, follower] = wrote(a) ? [a, b] : [b, a];
    assert.ok(wrote(leader) && !wrote(follower), 'exactly one replica wrote to Azure');
    const coordination = env.cluster.kc.makeApiClient(CoordinationV1Api);
    const before = await coordination.readNamespacedLease({ name: lease, namespace: env.namespace });
    leader.kill('SIGKILL');
    await leader.exited;
    const handedOver = Date.now();
    await createPodIdentity(env, 'after-failover', spec(['t']));
    await ready('after-failover', [leader, follower], 30_000);
    const l = await coordination.readNamespacedLease({ name: lease, namespace: env.namespace });
    assert.notEqual(l.spec?.holderIdentity, before.spec?.holderIdentity);
    assert.ok(Date.now() - handedOver < 20_000);
    assert.ok(wrote(follower), 'the new leader wrote');
    assert.equal(ours().filter((i) => i.tags['podidentity-name'] === 'led').length, 1);
    await deletePodIdentity(env, 'led');
    await deletePodIdentity(env, 'after-failover');
    await waitFor('deleted', async () => !(await getPodIdentity(env, 'led')) && !(await getPodIdentity(env, 'after-failover')), { timeoutMs: 30_000 });
    assert.equal(ours().length, 0);
  });
});
