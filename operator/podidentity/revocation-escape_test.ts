import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodIdentityPolicy } from '../../lib/api/types.js';
import { roleDefinitionGuid } from '../azure/ids.js';
import { harness, SUB } from '../testing/podidentity-harness.js';

/**
 * Attack: keep a grant the policy has taken away. When a policy is tightened, the operator revokes what the
 * PodIdentity recorded and the policy no longer allows. If one still-allowed entry has no recorded role
 * definition (it never resolved, or was added in the same moment), the revocation must still happen for the
 * denied ones.
 */
const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;
const CONTRIBUTOR = 'b24988ac-6180-42a0-ab88-20f7382dd24c';
const policy = (allowedRoles: string[]): PodIdentityPolicy => ({
  apiVersion: 'podidentity.dev/v1alpha1',
  kind: 'PodIdentityPolicy',
  metadata: { name: 'team' },
  spec: { allowedRoles, allowedScopes: [RG('data')] },
});
const contributorAssignments = (azure: ReturnType<typeof harness>['azure']) =>
  [...azure.assignments.values()].filter((a) => roleDefinitionGuid(a.roleDefinitionId) === CONTRIBUTOR);

describe('revocation escape: a denied grant survives a tightened policy', () => {
  it('an allowed entry that never resolved (a role that does not exist) does not keep a revoked grant alive', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [policy(['Reader', 'Contributor', 'Ghost Role'])];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }, { role: 'Ghost Role', scope: RG('data') }] });
    await settle('team/web');
    assert.equal(contributorAssignments(azure).length, 1, 'Contributor granted while allowed');

    world.policyList = [policy(['Reader', 'Ghost Role'])];
    await settle('team/web');
    assert.deepEqual(contributorAssignments(azure), [], 'Contributor revoked');
    assert.equal(world.pids.get('team/web')!.status?.roleAssignments?.[0]?.state, 'Denied');
  });

  it('adding an allowed entry in the same change as the tightening does not keep a revoked grant alive', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [policy(['Reader', 'Contributor'])];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('team/web');
    assert.equal(contributorAssignments(azure).length, 1);

    world.policyList = [policy(['Reader'])];
    world.updateSpec('team/web', (spec) => spec.roleAssignments!.push({ role: 'Reader', scope: RG('data') }));
    await settle('team/web');
    assert.deepEqual(contributorAssignments(azure), [], 'Contributor revoked');
  });
});

describe('revocation escape: a grant at a management group is never listed, so never removed', () => {
  const MG = '/providers/Microsoft.Management/managementGroups/other-mg';
  const identityId = `${RG('shared')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app`;
  const wide = (allowedScopes: string[]): PodIdentityPolicy => ({
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentityPolicy',
    metadata: { name: 'team' },
    spec: { allowedRoles: ['Reader'], allowedScopes, allowedExistingIdentities: [identityId] },
  });
  const atMg = (azure: ReturnType<typeof harness>['azure']) => [...azure.assignments.values()].filter((a) => a.scope.toLowerCase() === MG.toLowerCase());

  it('a tightened policy revokes a management-group grant', async () => {
    const { world, azure, settle } = harness();
    azure.seedIdentity(identityId);
    world.policyList = [wide(['/**'])];
    world.create('team', 'web', { identity: { existing: { resourceId: identityId } }, roleAssignments: [{ role: 'Reader', scope: MG }] });
    await settle('team/web');
    assert.equal(atMg(azure).length, 1, 'granted at the management group while allowed');
    world.policyList = [wide([RG('data')])];
    await settle('team/web');
    assert.deepEqual(atMg(azure), [], 'revoked');
  });

  it('deleting the PodIdentity removes its management-group grant from the existing identity', async () => {
    const { world, azure, settle } = harness();
    azure.seedIdentity(identityId);
    world.policyList = [wide(['/**'])];
    world.create('team', 'web', { identity: { existing: { resourceId: identityId } }, roleAssignments: [{ role: 'Reader', scope: MG }] });
    await settle('team/web');
    assert.equal(atMg(azure).length, 1);
    world.delete('team/web');
    await settle('team/web');
    assert.equal(world.pids.get('team/web'), undefined, 'finalised');
    assert.deepEqual(atMg(azure), [], 'removed');
  });
});

describe('revocation keeps what is still allowed', () => {
  it('an allowed grant respelled from its name to its roleDefinitionId, in the same change as a denied entry, is kept', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [policy(['Reader', 'Contributor'])];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }, { role: 'Contributor', scope: RG('data') }] });
    await settle('team/web');
    assert.equal(azure.assignments.size, 2);
    world.policyList = [policy(['Reader'])];
    world.updateSpec('team/web', (spec) => {
      spec.roleAssignments![0]!.role = `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7`;
    });
    await settle('team/web');
    assert.deepEqual(contributorAssignments(azure), [], 'Contributor revoked');
    assert.equal(azure.assignments.size, 1, 'Reader kept');
  });
});
