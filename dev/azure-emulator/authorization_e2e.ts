/** Contract: @azure/arm-authorization against the emulator — role definitions, role assignments, ARM authz. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AuthorizationManagementClient } from '@azure/arm-authorization';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { ClientSecretCredential } from '@azure/identity';
import type { RestError } from '@azure/core-rest-pipeline';
import { waitFor } from '../support/wait.js';
import { startFixture, type Fixture, restError } from './test-fixture.js';

const READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7';

describe('arm-authorization roles and assignments', () => {
  let fx: Fixture;
  let authz: AuthorizationManagementClient;
  let msi: ManagedServiceIdentityClient;
  let rgScope: string;
  before(async () => {
    fx = await startFixture({ principalReplicationDelayMs: 1500 });
    fx.emu.seed.resourceGroup('rg-authz');
    authz = new AuthorizationManagementClient(fx.credential, fx.emu.subscriptionId, fx.clientOptions);
    msi = new ManagedServiceIdentityClient(fx.credential, fx.emu.subscriptionId, fx.clientOptions);
    // Pass the scope WITHOUT its leading slash (reference §3).
    rgScope = `subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-authz`;
  });
  after(() => fx.emu.stop());

  it('resolves a role name to its built-in definition, and gets it by id', async () => {
    const found = [];
    for await (const def of authz.roleDefinitions.list(rgScope, { filter: "roleName eq 'Reader'" })) found.push(def);
    assert.equal(found.length, 1);
    assert.equal(found[0]?.name, READER);
    assert.equal(found[0]?.roleName, 'Reader');
    assert.equal(found[0]?.roleType, 'BuiltInRole');
    assert.equal(found[0]?.id, `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`);
    const byId = await authz.roleDefinitions.get(rgScope, 'f1a07417-d97a-45cb-824c-7a7467783830');
    assert.equal(byId.roleName, 'Managed Identity Operator');
  });

  it('creates a role assignment, refuses a duplicate under another name (409), lists, gets and deletes it', async () => {
    const identity = fx.emu.seed.identity({ resourceGroup: 'rg-authz', name: 'seeded-id' });
    const roleDefinitionId = `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`;
    const name = randomUUID();
    const created = await authz.roleAssignments.create(rgScope, name, { roleDefinitionId, principalId: identity.principalId, principalType: 'ServicePrincipal' });
    assert.equal(created.name, name);
    assert.equal(created.principalId, identity.principalId);
    assert.equal(created.scope, `/${rgScope}`);

    const again = await restError(authz.roleAssignments.create(rgScope, randomUUID(), { roleDefinitionId, principalId: identity.principalId, principalType: 'ServicePrincipal' }));
    assert.equal(again.statusCode, 409);
    assert.equal(again.code, 'RoleAssignmentExists');
    const sameName = await restError(authz.roleAssignments.create(rgScope, name, { roleDefinitionId, principalId: identity.principalId, principalType: 'ServicePrincipal' }));
    assert.equal(sameName.statusCode, 409);

    const listed = [];
    for await (const ra of authz.roleAssignments.listForScope(rgScope, { filter: `principalId eq '${identity.principalId}'` })) listed.push(ra);
    assert.deepEqual(listed.map((ra) => ra.name), [name]);
    const got = await authz.roleAssignments.get(rgScope, name);
    assert.equal(got.roleDefinitionId, roleDefinitionId);

    await authz.roleAssignments.delete(rgScope, name);
    assert.equal((await restError(authz.roleAssignments.get(rgScope, name))).statusCode, 404);
    assert.equal(fx.emu.state.roleAssignments().some((ra) => ra.name === name), false);
  });

  it('tolerates a leading-slash scope (the SDK sends //subscriptions/...)', async () => {
    const identity = fx.emu.seed.identity({ resourceGroup: 'rg-authz', name: 'slash-id' });
    const name = randomUUID();
    await authz.roleAssignments.create(`/${rgScope}`, name, {
      roleDefinitionId: `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
      principalId: identity.principalId,
      principalType: 'ServicePrincipal',
    });
    const put = fx.emu.requests.log().filter((e) => e.route === 'roleAssignments.put' && e.path.endsWith(name));
    assert.equal(put.length, 1);
    assert.equal(put[0]?.status, 201);
    assert.equal(fx.emu.state.roleAssignments().find((ra) => ra.name === name)?.scope, `/${rgScope}`);
  });

  it('answers PrincipalNotFound while the replication delay lasts, then succeeds', async () => {
    const identity = await msi.userAssignedIdentities.createOrUpdate('rg-authz', 'fresh-id', { location: 'eastus' });
    const create = () =>
      authz.roleAssignments.create(rgScope, randomUUID(), {
        roleDefinitionId: `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
        principalId: identity.principalId ?? '',
        principalType: 'ServicePrincipal',
      });
    const early = await restError(create());
    assert.equal(early.statusCode, 400);
    assert.equal(early.code, 'PrincipalNotFound');
    let notFoundCount = 1;
    const created = await waitFor(
      'role assignment after the replication delay',
      async () => {
        try {
          return await create();
        } catch (err) {
          if ((err as RestError).code === 'PrincipalNotFound') notFoundCount++;
          throw err;
        }
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.equal(created.principalId, identity.principalId);
    assert.ok(notFoundCount >= 1);
    const unknown = await restError(
      authz.roleAssignments.create(rgScope, randomUUID(), {
        roleDefinitionId: `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
        principalId: randomUUID(),
        principalType: 'ServicePrincipal',
      }),
    );
    assert.equal(unknown.code, 'PrincipalNotFound');
  });

  it('rejects a scope that does not exist and a non-GUID name', async () => {
    const identity = fx.emu.seed.identity({ resourceGroup: 'rg-authz', name: 'scope-id' });
    const params = {
      roleDefinitionId: `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
      principalId: identity.principalId,
      principalType: 'ServicePrincipal' as const,
    };
    const missingRg = await restError(authz.roleAssignments.create(`subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-nope`, randomUUID(), params));
    assert.equal(missingRg.statusCode, 404);
    assert.equal(missingRg.code, 'ResourceGroupNotFound');
    const missingResource = await restError(
      authz.roleAssignments.create(`${rgScope}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope`, randomUUID(), params),
    );
    assert.equal(missingResource.code, 'ResourceNotFound');
    const badName = await restError(authz.roleAssignments.create(rgScope, 'not-a-guid', params));
    assert.equal(badName.code, 'InvalidRoleAssignmentId');
  });

  it('enforces ARM authorization: Reader cannot write, Contributor cannot assign roles', async () => {
    const mk = (role: string) => {
      const secret = randomUUID();
      const sp = fx.emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: secret, role, scope: `/${rgScope}` });
      const credential = new ClientSecretCredential(fx.emu.tenantId, sp.clientId, secret, { authorityHost: fx.emu.authorityHost, disableInstanceDiscovery: true });
      return { sp, credential };
    };
    const reader = mk('Reader');
    const readerMsi = new ManagedServiceIdentityClient(reader.credential, fx.emu.subscriptionId, fx.clientOptions);
    await readerMsi.userAssignedIdentities.get('rg-authz', 'seeded-id');
    const denied = await restError(readerMsi.userAssignedIdentities.createOrUpdate('rg-authz', 'reader-made', { location: 'eastus' }));
    assert.equal(denied.statusCode, 403);
    assert.equal(denied.code, 'AuthorizationFailed');

    const contributor = mk('Contributor');
    const contribMsi = new ManagedServiceIdentityClient(contributor.credential, fx.emu.subscriptionId, fx.clientOptions);
    await contribMsi.userAssignedIdentities.createOrUpdate('rg-authz', 'contrib-made', { location: 'eastus' });
    const contribAuthz = new AuthorizationManagementClient(contributor.credential, fx.emu.subscriptionId, fx.clientOptions);
    const noAssign = await restError(
      contribAuthz.roleAssignments.create(rgScope, randomUUID(), {
        roleDefinitionId: `/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
        principalId: reader.sp.principalId,
        principalType: 'ServicePrincipal',
      }),
    );
    assert.equal(noAssign.statusCode, 403);
    // Outside its resource group the Contributor has nothing.
    fx.emu.seed.resourceGroup('rg-other');
    const outside = await restError(contribMsi.userAssignedIdentities.createOrUpdate('rg-other', 'x-made', { location: 'eastus' }));
    assert.equal(outside.code, 'AuthorizationFailed');
  });
});
