/**
 * The operator's Azure adapters against the emulator, through the real Azure SDKs, at the boundary where a
 * role assignment is written:
 * - issue 11 item 1: a scope with dot segments must never be sent (the SDK's URL handling resolves it to another
 *   scope, and the emulator, like ARM, then acts on the resolved one);
 * - issue 11 item 8: the operator's own Azure rights are the last line: "Role Based Access Control
 *   Administrator" with an ABAC condition lets it assign only the roles its policies may ever allow, only at
 *   the scopes where it holds the role, even if the operator itself tried something else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AuthorizationManagementClient } from '@azure/arm-authorization';
import { ClientSecretCredential } from '@azure/identity';
import { ForbiddenError } from '../../operator/azure/errors.js';
import { createArmClients } from '../../operator/azure/arm/index.js';
import { roleAssignmentName } from '../../operator/azure/ids.js';
import type { AzureClients } from '../../operator/azure/types.js';
import { startAzureEmulator, type AzureEmulator } from '../../dev/azure-emulator/emulator.js';

const READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7';
const OWNER = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635';
const CONTRIBUTOR = 'b24988ac-6180-42a0-ab88-20f7382dd24c';
const BLOB_READER = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1';

/**
 * The condition config/azure/grant-operator-rights.sh puts on the operator's RBAC Administrator assignments,
 * taken from the script itself (--dry-run prints its az commands), so the test enforces what ships.
 */
function scriptCondition(guids: string[]): string {
  const args = ['config/azure/grant-operator-rights.sh', '--dry-run', '--assignee-object-id', randomUUID(), '--subscription', '00000000-0000-4000-8000-000000000001', '--identity-resource-group', 'pods', '--role-scope', '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/team-a'];
  for (const g of guids) args.push('--allowed-role', g);
  const out = execFileSync('bash', args, { encoding: 'utf8' });
  const quoted = /--condition \$'((?:[^'\\]|\\.)*)'/.exec(out)?.[1];
  assert.ok(quoted, `no --condition in the script's output:\n${out}`);
  return quoted.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function operatorClients(emu: AzureEmulator, clientId: string, clientSecret: string): AzureClients {
  const credential = new ClientSecretCredential(emu.tenantId, clientId, clientSecret, { authorityHost: emu.authorityHost, disableInstanceDiscovery: true });
  return createArmClients({ credential, subscriptionId: emu.subscriptionId, endpoint: emu.armEndpoint });
}

describe('the Azure boundary of role assignments', () => {
  let emu: AzureEmulator;
  const definition = (guid: string) => `/subscriptions/${emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${guid}`;
  const rg = (name: string) => `/subscriptions/${emu.subscriptionId}/resourceGroups/${name}`;
  const assignmentsOf = (principalId: string) => emu.state.roleAssignments().filter((ra) => ra.principalId === principalId);
  const outside = (principalId: string, allowed: string) =>
    assignmentsOf(principalId).filter((ra) => ra.scope.toLowerCase() !== allowed.toLowerCase() && !ra.scope.toLowerCase().startsWith(`${allowed.toLowerCase()}/`));

  before(async () => {
    emu = await startAzureEmulator();
    emu.trustInProcess();
    emu.seed.resourceGroup('team-a');
    emu.seed.resourceGroup('prod');
  });
  after(() => emu.stop());

  describe('role-assignment scope escape through dot segments', () => {
    const escapes = (sub: string) => [
      [`/subscriptions/${sub}/resourceGroups/team-a/providers/../../..`, `/subscriptions/${sub}`],
      [`/subscriptions/${sub}/resourceGroups/team-a/providers/../../../resourceGroups/prod`, `/subscriptions/${sub}/resourceGroups/prod`],
    ];

    it('is real: the SDK resolves the dot segments and the emulator, like ARM, assigns at the resolved scope', async () => {
      // Proves the emulator reproduces the attack, so the next test's "nothing lands" means something.
      const secret = `s-${randomUUID()}`;
      const sp = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: secret, role: 'Owner' });
      const credential = new ClientSecretCredential(emu.tenantId, sp.clientId, secret, { authorityHost: emu.authorityHost, disableInstanceDiscovery: true });
      const authz = new AuthorizationManagementClient(credential, emu.subscriptionId, { endpoint: emu.armEndpoint, credentialScopes: ['https://management.azure.com/.default'] });
      for (const [scope, resolved] of escapes(emu.subscriptionId)) {
        const victim = emu.seed.identity({ resourceGroup: 'team-a', name: `victim-${randomUUID().slice(0, 8)}` });
        const created = await authz.roleAssignments.create(scope!.slice(1), randomUUID(), { roleDefinitionId: definition(READER), principalId: victim.principalId, principalType: 'ServicePrincipal' });
        assert.equal(created.scope, resolved, 'Azure reports the resolved scope');
        assert.deepEqual(assignmentsOf(victim.principalId).map((ra) => ra.scope), [resolved]);
      }
    });

    it("the operator's role adapter refuses such a scope: no assignment lands outside team-a", async () => {
      const secret = `s-${randomUUID()}`;
      const sp = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: secret, role: 'Owner' });
      const azure = operatorClients(emu, sp.clientId, secret);
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `escape-${randomUUID().slice(0, 8)}` });
      for (const [scope] of escapes(emu.subscriptionId)) {
        await assert.rejects(azure.roles.ensure(roleAssignmentName(identity.principalId, definition(READER), scope!), scope!, definition(READER), identity.principalId), /non-canonical role assignment scope/);
        await assert.rejects(azure.roles.resolveRole('Reader', scope!), /non-canonical role assignment scope/);
      }
      assert.deepEqual(outside(identity.principalId, rg('team-a')), [], 'nothing assigned outside team-a');
      assert.deepEqual(assignmentsOf(identity.principalId), []);
    });
  });

  describe("the operator's own Azure rights as the last line", () => {
    let azure: AzureClients;
    let operatorPrincipal: string;
    let condition: string;
    before(() => {
      condition = scriptCondition([READER, BLOB_READER]);
      assert.match(condition, /ForAnyOfAnyValues:GuidEquals \{acdd72a7-3385-48ef-bd42-f606fba81ae7, 2a2b9908-6ea1-4ae2-8e65-a410df84e7d1\}/);
      const secret = `s-${randomUUID()}`;
      // Reader at the subscription stands in for the documented custom "role assignment reader" role (list).
      const sp = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: secret, role: 'Reader' });
      operatorPrincipal = sp.principalId;
      emu.seed.roleAssignment({ principalId: sp.principalId, role: 'Role Based Access Control Administrator', scope: rg('team-a'), condition });
      azure = operatorClients(emu, sp.clientId, secret);
    });

    it('an allowed role at a granted scope is assigned and can be removed again', async () => {
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `ok-${randomUUID().slice(0, 8)}` });
      const name = roleAssignmentName(identity.principalId, definition(READER), rg('team-a'));
      await azure.roles.ensure(name, rg('team-a'), definition(READER), identity.principalId);
      assert.deepEqual(assignmentsOf(identity.principalId).map((ra) => ra.roleName), ['Reader']);
      assert.deepEqual((await azure.roles.listForPrincipal(identity.principalId, emu.subscriptionId)).map((ra) => ra.name), [name]);
      await azure.roles.delete(rg('team-a'), name);
      assert.deepEqual(assignmentsOf(identity.principalId), []);
    });

    it('an out-of-policy role (Owner) attempted by the operator is refused by Azure with 403 AuthorizationFailed (ABAC)', async () => {
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `owner-${randomUUID().slice(0, 8)}` });
      const name = roleAssignmentName(identity.principalId, definition(OWNER), rg('team-a'));
      const err = await azure.roles.ensure(name, rg('team-a'), definition(OWNER), identity.principalId).then(
        () => assert.fail('Azure accepted an Owner assignment from the conditioned operator'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ForbiddenError, String(err));
      assert.equal(err.statusCode, 403);
      assert.equal(err.code, 'AuthorizationFailed');
      assert.match(err.message, new RegExp(`object id '${operatorPrincipal}' has an authorization with ABAC condition that is not fulfilled to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '${rg('team-a')}/providers/Microsoft.Authorization/roleAssignments/${name}'`));
      assert.deepEqual(assignmentsOf(identity.principalId), [], 'no Owner assignment exists');
    });

    it('an allowed role outside the granted scopes is refused (403, no condition to satisfy)', async () => {
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `far-${randomUUID().slice(0, 8)}` });
      for (const scope of [rg('prod'), `/subscriptions/${emu.subscriptionId}`]) {
        const err = await azure.roles.ensure(roleAssignmentName(identity.principalId, definition(READER), scope), scope, definition(READER), identity.principalId).then(
          () => assert.fail(`Azure accepted an assignment at ${scope}`),
          (e: unknown) => e,
        );
        assert.ok(err instanceof ForbiddenError, String(err));
        assert.match(err.message, /does not have authorization to perform action 'Microsoft\.Authorization\/roleAssignments\/write'/);
      }
      assert.deepEqual(assignmentsOf(identity.principalId), []);
    });

    it("the operator cannot delete others' assignments of roles outside its condition", async () => {
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `other-${randomUUID().slice(0, 8)}` });
      const theirs = emu.seed.roleAssignment({ principalId: identity.principalId, role: 'Contributor', scope: rg('team-a') });
      await assert.rejects(azure.roles.delete(rg('team-a'), theirs.name), (e: unknown) => e instanceof ForbiddenError && e.code === 'AuthorizationFailed' && /ABAC condition/.test(e.message));
      assert.deepEqual(assignmentsOf(identity.principalId).map((ra) => ra.roleDefinitionId.split('/').pop()), [CONTRIBUTOR]);
    });

    it('the emulator reports the condition on the assignment, as ARM does', async () => {
      const mine = emu.state.roleAssignments().find((ra) => ra.principalId === operatorPrincipal && ra.roleName === 'Role Based Access Control Administrator');
      assert.ok(mine);
      const secret = `s-${randomUUID()}`;
      const owner = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: secret, role: 'Owner' });
      const authz = new AuthorizationManagementClient(new ClientSecretCredential(emu.tenantId, owner.clientId, secret, { authorityHost: emu.authorityHost, disableInstanceDiscovery: true }), emu.subscriptionId, {
        endpoint: emu.armEndpoint,
        credentialScopes: ['https://management.azure.com/.default'],
      });
      const got = await authz.roleAssignments.get(rg('team-a').slice(1), mine.name);
      assert.equal(got.condition, condition);
      assert.equal(got.conditionVersion, '2.0');
      const identity = emu.seed.identity({ resourceGroup: 'team-a', name: `cond-${randomUUID().slice(0, 8)}` });
      await assert.rejects(
        authz.roleAssignments.create(rg('team-a').slice(1), randomUUID(), { roleDefinitionId: definition(READER), principalId: identity.principalId, principalType: 'ServicePrincipal', condition: '@Request[x] Bogus {', conditionVersion: '2.0' }),
        (e: { statusCode?: number }) => e.statusCode === 400,
      );
    });
  });
});
