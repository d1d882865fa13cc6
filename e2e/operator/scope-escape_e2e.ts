/**
 * Issue 11 item 1, end to end: a role-assignment scope with dot segments, written past the schema (an old CRD,
 * or a direct etcd write), must not escape the PodIdentityPolicy. The real operator process, the real API
 * server serving a CRD without the scope patterns, and the emulator through the real SDK (whose URL handling
 * resolves dot segments, as it does against ARM).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ApiextensionsV1Api, type V1JSONSchemaProps } from '@kubernetes/client-node';
import { GROUP, PODIDENTITY_PLURAL, VERSION } from '../../lib/api/types.js';
import { installCrds, loadCrds } from '../../dev/local-cluster/controlplane/crds.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { applyPolicy, condition, createPodIdentity, deletePodIdentity, deletePolicy, getPodIdentity, operatorEnv, type OperatorEnv } from './harness.js';

/** Serves the PodIdentity CRD without the id patterns, as a CRD from before they were tightened would. */
async function installLooseCrd(env: OperatorEnv): Promise<void> {
  const api = env.cluster.kc.makeApiClient(ApiextensionsV1Api);
  const crd = loadCrds().find((c) => c.spec.names.plural === PODIDENTITY_PLURAL)!;
  const spec = crd.spec.versions[0]!.schema!.openAPIV3Schema!.properties!['spec']!;
  const item = spec.properties!['roleAssignments']!.items as V1JSONSchemaProps;
  delete item.properties!['scope']!.pattern;
  delete item.properties!['role']!.pattern;
  delete spec.properties!['identity']!.properties!['existing']!.properties!['resourceId']!.pattern;
  const name = crd.metadata!.name!;
  const existing = await api.readCustomResourceDefinition({ name });
  crd.metadata = { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion };
  await api.replaceCustomResourceDefinition({ name, body: crd });
  // Served once a dry-run create of an escaping scope is accepted.
  const probe = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name: 'probe' }, spec: { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: `/subscriptions/${env.emu.subscriptionId}/resourceGroups/a/providers/../../..` }] } };
  await waitFor('loose CRD served', () =>
    env.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace: env.namespace, body: probe, dryRun: 'All' }).then(() => true, () => false),
  { timeoutMs: 30_000, intervalMs: 200 });
}

describe('role-assignment scope escape, end to end (past the schema)', () => {
  let env: OperatorEnv;
  let operator: ManagedProcess;
  const policyName = `escape-${randomUUID().slice(0, 8)}`;
  const inside = (scope: string) => scope.toLowerCase() === env.rg('team-a').toLowerCase() || scope.toLowerCase().startsWith(`${env.rg('team-a').toLowerCase()}/`);
  /** Reader assignments the operator could have made (the seeded operator principal holds Owner, not Reader). */
  const readersOutsideTeamA = () => env.emu.state.roleAssignments().filter((ra) => ra.roleName === 'Reader' && !inside(ra.scope));

  before(async () => {
    env = await operatorEnv();
    env.emu.seed.resourceGroup('team-a');
    env.emu.seed.resourceGroup('prod');
    await applyPolicy(env, policyName, { allowedRoles: ['Reader'], allowedScopes: [env.rg('team-a')] });
    await installLooseCrd(env);
    operator = env.startOperator('operator-escape');
  });
  after(async () => {
    await operator?.stop();
    await deletePolicy(env, policyName);
    if (env) await installCrds(env.cluster.kc); // the real, tight CRDs again for the files that follow
    await env?.emu.stop();
  });

  const settled = (name: string) =>
    waitFor(`${name} reconciled`, async () => {
      const pid = await getPodIdentity(env, name);
      const ready = condition(pid, 'Ready');
      return ready && pid?.status?.observedGeneration === pid?.metadata.generation && (ready.status === 'True' || ready.reason === 'InvalidSpec') ? pid : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- operator output ---\n${operator.output().slice(-6000)}`);
    });

  for (const [what, tail] of [
    ['to the subscription', '/providers/../../..'],
    ['to a sibling resource group', '/providers/../../../resourceGroups/prod'],
  ] as const) {
    it(`a scope escaping ${what} is InvalidSpec, and no assignment lands outside the allowed resource group`, async () => {
      const name = `escape-${what.split(' ').pop()}`;
      const scope = `${env.rg('team-a')}${tail}`;
      await createPodIdentity(env, name, { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope }] });
      const pid = await settled(name);
      assert.equal(condition(pid, 'Ready')?.status, 'False');
      assert.equal(condition(pid, 'Ready')?.reason, 'InvalidSpec');
      assert.equal(condition(pid, 'Ready')?.message, `roleAssignments[0].scope: ${JSON.stringify(scope)} is not a canonical ARM scope: it has a ".." path segment`);
      assert.deepEqual(readersOutsideTeamA(), [], 'no Reader assignment outside team-a');
      assert.equal(env.emu.state.identities().filter((i) => i.name.includes(name)).length, 0, 'no Azure write at all');
      await deletePodIdentity(env, name);
    });
  }

  it('an existing identity id extending the allowed identity id (…/app/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin) is InvalidSpec, and admin is never bound', async () => {
    const app = env.emu.seed.identity({ resourceGroup: 'team-a', name: 'app' });
    const admin = env.emu.seed.identity({ resourceGroup: 'team-a', name: 'admin' });
    await applyPolicy(env, policyName, { allowedRoles: ['Reader'], allowedScopes: [env.rg('team-a')], allowedExistingIdentities: [app.id] });
    const name = 'escape-extension';
    const resourceId = `${app.id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`;
    await createPodIdentity(env, name, { identity: { existing: { resourceId } } });
    const pid = await settled(name);
    assert.equal(condition(pid, 'Ready')?.reason, 'InvalidSpec', `status: ${JSON.stringify(pid?.status)}`);
    assert.match(condition(pid, 'Ready')?.message ?? '', /^identity\.existing\.resourceId: .*is not a user-assigned identity id/);
    assert.notEqual(pid?.status?.clientId, admin.clientId, 'admin is not bound');
    await deletePodIdentity(env, name);
  });

  it('a canonical scope inside the allowed resource group is assigned exactly there', async () => {
    const scope = env.rg('team-a');
    await createPodIdentity(env, 'inside', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope }] });
    const pid = await settled('inside');
    assert.equal(condition(pid, 'Ready')?.status, 'True', condition(pid, 'Ready')?.message);
    assert.deepEqual(env.emu.state.roleAssignments().filter((ra) => ra.principalId === pid?.status?.principalId).map((ra) => ra.scope), [scope]);
    assert.deepEqual(readersOutsideTeamA(), []);
    await deletePodIdentity(env, 'inside');
    await waitFor('inside gone', async () => !(await getPodIdentity(env, 'inside')), { timeoutMs: 30_000, intervalMs: 200 });
  });
});
