/**
 * The operator end to end: the real API server, the Azure emulator through the real SDKs, and
 * `node --import tsx operator/main.ts` as a child process.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startProcess, type ManagedProcess } from '../../dev/support/processes.js';
import { defaultIdentityName } from '../../operator/podidentity/names.js';
import { waitFor } from '../../dev/support/wait.js';
import {
  applyPolicy,
  condition,
  createNode,
  createPod,
  createPodIdentity,
  deletePod,
  deletePodIdentity,
  deletePolicy,
  getPodIdentity,
  operatorEnv,
  patchPodIdentitySpec,
  type OperatorEnv,
} from './harness.js';

const READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7';
const CONTRIBUTOR = 'b24988ac-6180-42a0-ab88-20f7382dd24c';

describe('operator e2e', () => {
  let env: OperatorEnv;
  let operator: ManagedProcess;
  const policyName = `e2e-${randomUUID().slice(0, 8)}`;

  before(async () => {
    env = await operatorEnv();
    await applyPolicy(env, policyName, { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [env.rg('data')], allowedExistingIdentities: [`${env.rg('shared')}/**`] });
    operator = env.startOperator();
  });
  after(async () => {
    await operator?.stop();
    await deletePolicy(env, policyName);
    await env?.emu.stop();
  });

  const ready = (name: string, timeoutMs = 60_000) =>
    waitFor(`${name} Ready`, async () => {
      const pid = await getPodIdentity(env, name);
      return condition(pid, 'Ready')?.status === 'True' && pid?.status?.observedGeneration === pid?.metadata.generation ? pid : undefined;
    }, { timeoutMs, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- operator output ---\n${operator.output().slice(-6000)}`);
    });
  const identityNamed = (name: string) => env.emu.state.identities().find((i) => i.name === name);
  const assignmentsOf = (principalId: string) => env.emu.state.roleAssignments().filter((ra) => ra.principalId === principalId);

  it('makes a PodIdentity Ready with its identity, role assignment and federated credentials; kubectl wait works', async () => {
    await createPod(env, 'web-1', { 'podidentity.dev/identity': 'web' }, { serviceAccountName: 'web-sa' });
    await createPodIdentity(env, 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: env.rg('data') }], serviceAccounts: ['prewarm'] });
    const wait = startProcess('kubectl-wait', 'kubectl', ['--kubeconfig', env.cluster.kubeconfigPath, 'wait', '--for=condition=Ready', `pid/web`, '-n', env.namespace, '--timeout=60s']);
    assert.equal(await wait.exited, 0, wait.output());
    const pid = await ready('web');
    const identity = identityNamed(defaultIdentityName(env.namespace, 'web'));
    assert.ok(identity, 'identity created in Azure');
    assert.equal(identity.resourceGroup, 'pods');
    assert.equal(identity.tags['podidentity-managed-by'], 'podidentity-operator');
    assert.equal(identity.tags['podidentity-namespace'], env.namespace);
    assert.equal(identity.tags['podidentity-uid'], pid.metadata?.uid, 'the durable ownership record');
    assert.equal(pid.status?.clientId, identity.clientId);
    assert.equal(pid.status?.principalId, identity.principalId);
    assert.equal(pid.status?.tenantId, env.emu.tenantId);
    for (const t of ['IdentityReady', 'RolesAssigned', 'CredentialsReady']) assert.equal(condition(pid, t)?.status, 'True', t);
    const ras = assignmentsOf(identity.principalId);
    assert.equal(ras.length, 1);
    assert.ok(ras[0]?.roleDefinitionId.endsWith(READER));
    assert.equal(ras[0]?.scope.toLowerCase(), env.rg('data').toLowerCase());
    const fics = env.emu.state.federatedCredentials(identity.id);
    assert.deepEqual(fics.map((f) => f.subject).sort(), [`system:serviceaccount:${env.namespace}:prewarm`, `system:serviceaccount:${env.namespace}:web-sa`]);
    assert.ok(fics.every((f) => f.issuer === env.cluster.issuer && f.audiences.join() === 'api://AzureADTokenExchange'));
  });

  it('converges spec changes: swapped role, changed selector', async () => {
    const before = (await getPodIdentity(env, 'web'))!;
    const principal = before.status!.principalId!;
    await patchPodIdentitySpec(env, 'web', { roleAssignments: [{ role: 'Contributor', scope: env.rg('data') }], selector: { matchLabels: { app: 'nothing' } } });
    await waitFor('roles and FICs converge', () => {
      const ras = assignmentsOf(principal);
      const fics = env.emu.state.federatedCredentials(before.status!.resourceId!);
      return ras.length === 1 && ras[0]!.roleDefinitionId.endsWith(CONTRIBUTOR) && fics.length === 1 && fics[0]!.subject.endsWith(':prewarm');
    }, { timeoutMs: 30_000, intervalMs: 200 });
    const pid = await ready('web');
    assert.equal(pid.status?.observedGeneration, 2);
    assert.equal(identityNamed(defaultIdentityName(env.namespace, 'web'))?.clientId, before.status?.clientId, 'same identity, updated in place');
  });

  it('deletes Azure resources with deletionPolicy Delete, then the finalizer comes off', async () => {
    const pid = (await getPodIdentity(env, 'web'))!;
    await deletePodIdentity(env, 'web');
    await waitFor('PodIdentity gone', async () => !(await getPodIdentity(env, 'web')), { timeoutMs: 30_000, intervalMs: 200 });
    assert.equal(identityNamed(defaultIdentityName(env.namespace, 'web')), undefined);
    assert.deepEqual(assignmentsOf(pid.status!.principalId!), []);
  });

  it('leaves Azure alone with deletionPolicy Retain', async () => {
    await createPodIdentity(env, 'kept', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: env.rg('data') }], serviceAccounts: ['a'], deletionPolicy: 'Retain' });
    const pid = await ready('kept');
    await deletePodIdentity(env, 'kept');
    await waitFor('PodIdentity gone', async () => !(await getPodIdentity(env, 'kept')), { timeoutMs: 30_000, intervalMs: 200 });
    const identity = identityNamed(defaultIdentityName(env.namespace, 'kept'));
    assert.ok(identity);
    assert.equal(assignmentsOf(pid.status!.principalId!).length, 1);
    assert.equal(env.emu.state.federatedCredentials(identity.id).length, 1);
  });

  it('denies by policy without any Azure write, and removes what a tightened policy no longer allows', async () => {
    await createPodIdentity(env, 'greedy', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: env.rg('data') }, { role: 'Owner', scope: env.rg('data') }] });
    const denied = await waitFor('PolicyDenied', async () => {
      const pid = await getPodIdentity(env, 'greedy');
      return condition(pid, 'Ready')?.reason === 'PolicyDenied' ? pid : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    assert.equal(condition(denied, 'Ready')?.message, `roleAssignments[1]: role "Owner" is not allowed in namespace "${env.namespace}" by any PodIdentityPolicy`);
    assert.equal(identityNamed(defaultIdentityName(env.namespace, 'greedy')), undefined, 'no identity created');
    // Events are posted in the background: the status can be there first.
    await waitFor('PolicyDenied Event', async () => {
      const events = await env.core.listNamespacedEvent({ namespace: env.namespace, fieldSelector: 'involvedObject.name=greedy' });
      return events.items.some((e) => e.reason === 'PolicyDenied' && e.type === 'Warning') || undefined;
    }, { timeoutMs: 10_000, intervalMs: 100 });

    await createPodIdentity(env, 'two-roles', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: env.rg('data') }, { role: 'Contributor', scope: env.rg('data') }] });
    const pid = await ready('two-roles');
    assert.equal(assignmentsOf(pid.status!.principalId!).length, 2);
    await applyPolicy(env, policyName, { allowedRoles: ['Reader'], allowedScopes: [env.rg('data')], allowedExistingIdentities: [`${env.rg('shared')}/**`] });
    await waitFor('Contributor revoked', () => {
      const ras = assignmentsOf(pid.status!.principalId!);
      return ras.length === 1 && ras[0]!.roleDefinitionId.endsWith(READER);
    }, { timeoutMs: 30_000, intervalMs: 200 });
    await waitFor('two-roles PolicyDenied', async () => condition(await getPodIdentity(env, 'two-roles'), 'Ready')?.reason === 'PolicyDenied', { timeoutMs: 30_000 });
    await applyPolicy(env, policyName, { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [env.rg('data')], allowedExistingIdentities: [`${env.rg('shared')}/**`] });
    await ready('two-roles');
    await deletePodIdentity(env, 'greedy');
    await deletePodIdentity(env, 'two-roles');
  });

  it('Node mode: pods on nodes of two scale sets get the identity with one PATCH per scale set, and lose it when they leave', async () => {
    const suffix = randomUUID().slice(0, 6);
    const kubelet = env.emu.seed.identity({ resourceGroup: 'mc_rg', name: `kubelet-${suffix}` });
    const a = env.emu.seed.scaleSet({ resourceGroup: 'mc_rg', name: `pool-a-${suffix}`, systemAssigned: true, instances: [{ nodeName: `a0-${suffix}`, ip: '127.0.0.21' }, { nodeName: `a1-${suffix}`, ip: '127.0.0.22' }] });
    const b = env.emu.seed.scaleSet({ resourceGroup: 'mc_rg', name: `pool-b-${suffix}`, instances: [{ nodeName: `b0-${suffix}`, ip: '127.0.0.23' }] });
    // Someone else's identity on pool-a: the operator must never remove it.
    const { ComputeManagementClient } = await import('@azure/arm-compute');
    env.emu.trustInProcess();
    const { ClientSecretCredential } = await import('@azure/identity');
    const cred = new ClientSecretCredential(env.emu.tenantId, env.operator.clientId, env.operator.clientSecret, { authorityHost: env.emu.authorityHost, disableInstanceDiscovery: true });
    const compute = new ComputeManagementClient(cred, env.emu.subscriptionId, { endpoint: env.emu.armEndpoint });
    await compute.virtualMachineScaleSets.beginUpdateAndWait('mc_rg', a.name, { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [kubelet.id]: {} } } }, { updateIntervalInMs: 50 });
    for (const inst of [...a.instances, ...b.instances]) await createNode(env, inst.nodeName, inst.providerID);
    env.emu.requests.reset();

    for (let i = 0; i < 6; i++) {
      const node = [a.instances[0]!, a.instances[1]!, b.instances[0]!][i % 3]!.nodeName;
      await createPod(env, `batch-${i}`, { app: 'batch' }, { nodeName: node, serviceAccountName: 'batch' });
    }
    await createPodIdentity(env, 'batch', { identity: { managed: {} }, mode: 'Node', selector: { matchLabels: { app: 'batch' } } });
    const pid = await ready('batch');
    const id = pid.status!.resourceId!;
    const onA = () => Object.keys(env.emu.state.scaleSet('mc_rg', a.name)!.userAssignedIdentities);
    const onB = () => Object.keys(env.emu.state.scaleSet('mc_rg', b.name)!.userAssignedIdentities);
    assert.ok(onA().some((x) => x.toLowerCase() === id.toLowerCase()));
    assert.ok(onB().some((x) => x.toLowerCase() === id.toLowerCase()));
    assert.ok(onA().includes(kubelet.id));
    assert.equal(env.emu.state.scaleSet('mc_rg', a.name)!.identityType, 'SystemAssigned, UserAssigned', 'system-assigned kept');
    assert.equal(env.emu.requests.counts()['PATCH vmss.patch'], 2, JSON.stringify(env.emu.requests.counts()));
    assert.deepEqual(pid.status?.nodeAssignments?.map((n) => n.state), ['Assigned', 'Assigned']);

    await deletePod(env, 'batch-2');
    await deletePod(env, 'batch-5'); // the last pods on pool-b
    await waitFor('identity removed from pool-b', () => !onB().some((x) => x.toLowerCase() === id.toLowerCase()), { timeoutMs: 30_000, intervalMs: 200 });
    assert.ok(onA().some((x) => x.toLowerCase() === id.toLowerCase()));

    await deletePodIdentity(env, 'batch');
    await waitFor('PodIdentity gone', async () => !(await getPodIdentity(env, 'batch')), { timeoutMs: 30_000, intervalMs: 200 });
    assert.deepEqual(onA(), [kubelet.id], 'only the foreign identity is left');
    assert.equal(identityNamed(defaultIdentityName(env.namespace, 'batch')), undefined);
  });
  it('switching identity leaves credentials and grants on the old identity: moving off a shared identity takes this PodIdentity\'s credential and grant with it', async () => {
    env.emu.seed.resourceGroup('shared');
    const shared = env.emu.seed.identity({ resourceGroup: 'shared', name: `common-${randomUUID().slice(0, 8)}` });
    await createPodIdentity(env, 'mover', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['mover'], roleAssignments: [{ role: 'Reader', scope: env.rg('data') }] });
    const before = await ready('mover');
    assert.equal(env.emu.state.federatedCredentials(shared.id).length, 1);
    assert.equal(assignmentsOf(shared.principalId).length, 1);
    await patchPodIdentitySpec(env, 'mover', { identity: { existing: null, managed: {} } } as never);
    const after = await waitFor('mover on its new identity', async () => {
      const pid = await ready('mover');
      return pid.metadata.generation !== before.metadata.generation && pid.status?.resourceId?.toLowerCase() !== shared.id.toLowerCase() ? pid : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200 });
    assert.deepEqual(env.emu.state.federatedCredentials(shared.id), [], 'the service account can no longer exchange for the shared identity');
    assert.deepEqual(assignmentsOf(shared.principalId), [], 'no grant left on the shared principal');
    assert.equal(assignmentsOf(after.status!.principalId!).length, 1, 'the grant moved with it');
    await deletePodIdentity(env, 'mover');
    await waitFor('mover gone', async () => !(await getPodIdentity(env, 'mover')), { timeoutMs: 30_000, intervalMs: 200 });
  });
});
