/** Contract: @azure/arm-msi against the emulator — identities and federated identity credentials. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import type { RestError } from '@azure/core-rest-pipeline';
import { operatorToken, rawRequest, startFixture, type Fixture } from './test-fixture.js';

const ISSUER = 'https://issuer.example.test/cluster-a';
const AUDIENCES = ['api://AzureADTokenExchange'];

async function rejectsWith(promise: Promise<unknown>, status: number, code: string): Promise<RestError> {
  try {
    await promise;
  } catch (err) {
    const e = err as RestError;
    assert.equal(e.statusCode, status, `status of ${e.message}`);
    assert.equal(e.code, code, `code of ${e.message}`);
    return e;
  }
  assert.fail(`expected HTTP ${status} ${code}`);
}

describe('arm-msi identities and federated credentials', () => {
  let fx: Fixture;
  let msi: ManagedServiceIdentityClient;
  before(async () => {
    fx = await startFixture({ pageSize: 5 });
    fx.emu.seed.resourceGroup('rg-ids', 'westeurope');
    msi = new ManagedServiceIdentityClient(fx.credential, fx.emu.subscriptionId, fx.clientOptions);
  });
  after(() => fx.emu.stop());

  it('creates, gets, updates, lists and deletes an identity; ids are stable', async () => {
    const created = await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-one', { location: 'westeurope', tags: { a: '1' } });
    assert.match(created.clientId ?? '', /^[0-9a-f-]{36}$/);
    assert.match(created.principalId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(created.tenantId, fx.emu.tenantId);
    assert.equal(created.id, `/subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-one`);
    const again = await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-one', { location: 'westeurope', tags: { a: '2' } });
    assert.equal(again.clientId, created.clientId);
    assert.equal(again.principalId, created.principalId);
    assert.deepEqual(again.tags, { a: '2' });
    const got = await msi.userAssignedIdentities.get('rg-ids', 'id-one');
    assert.equal(got.principalId, created.principalId);
    assert.equal(fx.emu.requests.counts()['PUT identities.put'], 2);

    // More than one page (pageSize 5): the SDK follows the absolute nextLink.
    for (let i = 0; i < 6; i++) await msi.userAssignedIdentities.createOrUpdate('rg-ids', `id-page-${i}`, { location: 'westeurope' });
    const names: string[] = [];
    for await (const identity of msi.userAssignedIdentities.listByResourceGroup('rg-ids')) names.push(identity.name ?? '');
    assert.equal(names.length, 7);
    const bySub: string[] = [];
    for await (const identity of msi.userAssignedIdentities.listBySubscription()) bySub.push(identity.name ?? '');
    assert.equal(bySub.length, 7);

    await msi.userAssignedIdentities.delete('rg-ids', 'id-one');
    await rejectsWith(msi.userAssignedIdentities.get('rg-ids', 'id-one'), 404, 'ResourceNotFound');
    await msi.userAssignedIdentities.delete('rg-ids', 'id-one'); // 204: deleting twice is fine
    assert.equal(fx.emu.state.identities().some((i) => i.name === 'id-one'), false);
  });

  it('refuses a missing resource group and a missing location', async () => {
    await rejectsWith(msi.userAssignedIdentities.createOrUpdate('rg-missing', 'x-id', { location: 'westeurope' }), 404, 'ResourceGroupNotFound');
    // The SDK insists on a location client-side, so send the request raw.
    const res = await rawRequest(`${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x-id?api-version=2024-11-30`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${await operatorToken(fx)}` },
      body: JSON.stringify({ tags: {} }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual((res.json as { error: { code: string } }).error.code, 'LocationRequired');
  });

  it('adds, lists and removes federated credentials; rejects a duplicate issuer+subject', async () => {
    const identity = await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-fic', { location: 'westeurope' });
    const fic = await msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-fic', 'ns1-sa1', { issuer: ISSUER, subject: 'system:serviceaccount:ns1:sa1', audiences: AUDIENCES });
    assert.equal(fic.issuer, ISSUER);
    assert.deepEqual(fic.audiences, AUDIENCES);
    await msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-fic', 'ns1-sa2', { issuer: ISSUER, subject: 'system:serviceaccount:ns1:sa2', audiences: AUDIENCES });
    const listed: string[] = [];
    for await (const f of msi.federatedIdentityCredentials.list('rg-ids', 'id-fic')) listed.push(f.subject ?? '');
    assert.deepEqual(listed.sort(), ['system:serviceaccount:ns1:sa1', 'system:serviceaccount:ns1:sa2']);
    const got = await msi.federatedIdentityCredentials.get('rg-ids', 'id-fic', 'ns1-sa1');
    assert.equal(got.subject, 'system:serviceaccount:ns1:sa1');

    await rejectsWith(
      msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-fic', 'other-name', { issuer: ISSUER, subject: 'system:serviceaccount:ns1:sa1', audiences: AUDIENCES }),
      400,
      'FederatedIdentityCredentialAlreadyExists',
    );
    await msi.federatedIdentityCredentials.delete('rg-ids', 'id-fic', 'ns1-sa1');
    await rejectsWith(msi.federatedIdentityCredentials.get('rg-ids', 'id-fic', 'ns1-sa1'), 404, 'ResourceNotFound');
    assert.deepEqual(fx.emu.state.federatedCredentials(identity.id ?? '').map((f) => f.name), ['ns1-sa2']);

    // Deleting the identity deletes its credentials.
    await msi.userAssignedIdentities.delete('rg-ids', 'id-fic');
    assert.deepEqual(fx.emu.state.federatedCredentials(identity.id ?? ''), []);
  });

  it('allows at most 20 federated credentials per identity', async () => {
    await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-limit', { location: 'westeurope' });
    for (let i = 0; i < 20; i++) {
      await msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-limit', `fic-${i}`, { issuer: ISSUER, subject: `system:serviceaccount:ns:sa-${i}`, audiences: AUDIENCES });
    }
    await rejectsWith(
      msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-limit', 'fic-20', { issuer: ISSUER, subject: 'system:serviceaccount:ns:sa-20', audiences: AUDIENCES }),
      400,
      'FederatedIdentityCredentialsLimitExceeded',
    );
    // Updating an existing one is still allowed at the limit.
    await msi.federatedIdentityCredentials.createOrUpdate('rg-ids', 'id-limit', 'fic-0', { issuer: ISSUER, subject: 'system:serviceaccount:ns:sa-0b', audiences: AUDIENCES });
  });

  it('rejects concurrent writes under one identity with 409, but not under different identities', async () => {
    await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-conc', { location: 'westeurope' });
    await msi.userAssignedIdentities.createOrUpdate('rg-ids', 'id-conc2', { location: 'westeurope' });
    const write = (identity: string, name: string) =>
      msi.federatedIdentityCredentials.createOrUpdate('rg-ids', identity, name, { issuer: ISSUER, subject: `system:serviceaccount:conc:${name}`, audiences: AUDIENCES });
    const results = await Promise.allSettled([write('id-conc', 'conc-a1'), write('id-conc', 'conc-a2')]);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(rejected.length, 1, 'exactly one of two parallel writes conflicts');
    const err = rejected[0]?.reason as RestError;
    assert.equal(err.statusCode, 409);
    assert.equal(err.code, 'ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity');
    const independent = await Promise.allSettled([write('id-conc', 'conc-b1'), write('id-conc2', 'conc-b2')]);
    assert.deepEqual(independent.map((r) => r.status), ['fulfilled', 'fulfilled']);
  });
});
