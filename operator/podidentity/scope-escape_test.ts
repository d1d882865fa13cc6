import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Condition, PodIdentityPolicy, PodIdentitySpec } from '../../lib/api/types.js';
import { harness, SUB } from '../testing/podidentity-harness.js';

/**
 * Attack (issue 11, item 1): a role-assignment scope with dot segments passes a prefix policy, then the ARM
 * SDK's URL handling resolves the dot segments and the assignment lands at the subscription or a sibling
 * resource group. The reconciler must reject such ids before any decision, and never call Azure with them.
 */
const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;
const teamA: PodIdentityPolicy = {
  apiVersion: 'podidentity.dev/v1alpha1',
  kind: 'PodIdentityPolicy',
  metadata: { name: 'team-a' },
  spec: { allowedRoles: ['Reader'], allowedScopes: [RG('team-a')], allowedExistingIdentities: [`${RG('team-a')}/**`] },
};
const cond = (status: { conditions?: Condition[] } | undefined, type: string) => status?.conditions?.find((c) => c.type === type);
const insideTeamA = (scope: string) => scope.toLowerCase() === RG('team-a').toLowerCase() || scope.toLowerCase().startsWith(`${RG('team-a')}/`.toLowerCase());

async function attempt(spec: PodIdentitySpec) {
  const h = harness();
  h.world.policyList = [teamA];
  h.world.create('team-a', 'web', spec);
  await h.settle('team-a/web');
  return { ...h, pid: h.world.pids.get('team-a/web')! };
}

describe('role-assignment scope escape (dot segments and other non-canonical ARM ids)', () => {
  const escapes: [string, string][] = [
    ['to the subscription', `${RG('team-a')}/providers/../../..`],
    ['to a sibling resource group', `${RG('team-a')}/providers/../../../resourceGroups/prod`],
    ['through percent-escaped dots', `${RG('team-a')}/providers/%2e%2e/%2E%2E/%2e%2e`],
    ['through a dot segment split by a tab', `${RG('team-a')}/providers/.\t./..\t/..`],
    ['through a backslash', `${RG('team-a')}/providers\\..\\..\\..`],
    ['through an empty segment', `${RG('team-a')}//providers/Microsoft.Storage/storageAccounts/x`],
  ];
  for (const [where, scope] of escapes) {
    it(`a scope escaping ${where} is rejected with InvalidSpec naming the field, and nothing is assigned outside the allowed scope`, async () => {
      const { pid, azure } = await attempt({ identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope }] });
      assert.deepEqual([...azure.assignments.values()].map((a) => a.scope).filter((s) => !insideTeamA(s)), [], 'no assignment outside team-a');
      assert.equal(azure.callsOf('roleAssignments.create'), 0, 'no role assignment PUT at all');
      assert.equal(azure.callsOf('roleDefinitions.resolve'), 0, 'not even a read with the bad scope');
      const ready = cond(pid.status, 'Ready');
      assert.equal(ready?.status, 'False');
      assert.equal(ready?.reason, 'InvalidSpec');
      assert.match(ready?.message ?? '', /^roleAssignments\[0\]\.scope: /);
      assert.equal(pid.status?.roleAssignments?.[0]?.state, 'Denied');
      assert.equal(pid.metadata.finalizers, undefined, 'no finalizer: nothing was written to Azure');
    });
  }

  it('an existing identity id with a dot segment is rejected before it is read or adopted', async () => {
    const resourceId = `${RG('team-a')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/../../../../resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prod-id`;
    const { pid, azure } = await attempt({ identity: { existing: { resourceId } } });
    assert.equal(azure.calls.length, 0, 'no Azure call');
    assert.equal(cond(pid.status, 'Ready')?.reason, 'InvalidSpec');
    assert.match(cond(pid.status, 'Ready')?.message ?? '', /^identity\.existing\.resourceId: /);
  });

  it('an existing identity id that extends an allowed identity id is rejected, and the identity it names is never read (attack: policy allows ".../app", spec names ".../app/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin")', async () => {
    const app = `${RG('team-a')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app`;
    const admin = `${RG('team-a')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`;
    const h = harness();
    h.world.policyList = [{ ...teamA, spec: { ...teamA.spec, allowedExistingIdentities: [app] } }];
    h.azure.seedIdentity(app);
    h.azure.seedIdentity(admin);
    h.world.create('team-a', 'web', { identity: { existing: { resourceId: `${app}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin` } } });
    await h.settle('team-a/web');
    const pid = h.world.pids.get('team-a/web')!;
    assert.equal(h.azure.calls.length, 0, 'no Azure call');
    assert.equal(cond(pid.status, 'Ready')?.reason, 'InvalidSpec');
    assert.match(cond(pid.status, 'Ready')?.message ?? '', /^identity\.existing\.resourceId: /);
    assert.equal(pid.status?.clientId, undefined, 'admin is not bound');
  });

  it('a non-canonical subscription in a scope never reaches an Azure list, even while revoking (attack: "/subscriptions/.." turns the per-subscription list into a tenant-wide one)', async () => {
    const h = harness();
    h.world.policyList = [teamA];
    h.world.create('team-a', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('team-a') }] });
    await h.settle('team-a/web');
    assert.equal(cond(h.world.pids.get('team-a/web')!.status, 'Ready')?.status, 'True');
    const listed: string[] = [];
    const list = h.azure.roles.listForPrincipal.bind(h.azure.roles);
    h.azure.roles.listForPrincipal = (principalId, subscriptionId) => {
      listed.push(subscriptionId);
      return list(principalId, subscriptionId);
    };
    h.world.updateSpec('team-a/web', (spec) => spec.roleAssignments!.push({ role: 'Reader', scope: '/subscriptions/../resourceGroups/team-a' }));
    await h.settle('team-a/web');
    assert.equal(cond(h.world.pids.get('team-a/web')!.status, 'Ready')?.reason, 'InvalidSpec');
    assert.deepEqual(listed.filter((s) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)), [], 'only GUID subscriptions are listed');
  });

  it('a managed identity resource group ".." is rejected', async () => {
    const { pid, azure } = await attempt({ identity: { managed: { resourceGroup: '..' } } });
    assert.equal(azure.calls.length, 0, 'no Azure call');
    assert.equal(cond(pid.status, 'Ready')?.reason, 'InvalidSpec');
    assert.match(cond(pid.status, 'Ready')?.message ?? '', /^identity\.managed\.resourceGroup: /);
  });

  it('a roleDefinitionId with dot segments is rejected', async () => {
    const role = `/subscriptions/${SUB}/resourceGroups/x/../../providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7`;
    const { pid, azure } = await attempt({ identity: { managed: {} }, roleAssignments: [{ role, scope: RG('team-a') }] });
    assert.equal(azure.callsOf('roleAssignments.create'), 0);
    assert.equal(cond(pid.status, 'Ready')?.reason, 'InvalidSpec');
    assert.match(cond(pid.status, 'Ready')?.message ?? '', /^roleAssignments\[0\]\.role: /);
  });

  it('a canonical scope inside the policy is still assigned, exactly as written', async () => {
    const scope = `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/data`;
    const { pid, azure } = await attempt({ identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope }] });
    assert.equal(cond(pid.status, 'Ready')?.status, 'True', cond(pid.status, 'Ready')?.message);
    assert.deepEqual([...azure.assignments.values()].map((a) => a.scope), [scope]);
  });
});
