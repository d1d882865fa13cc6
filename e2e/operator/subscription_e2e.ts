/**
 * The wrong subscription (issue 11 item 4): an identity named by its full resource id is read and written in
 * the subscription that id names, never in the operator's own. Through the operator's real ARM adapters and the
 * Azure SDKs against the emulator, which serves one subscription and answers SubscriptionNotFound for others.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFoundError } from '../../operator/azure/errors.js';
import { createArmClients } from '../../operator/azure/arm/index.js';
import type { AzureClients } from '../../operator/azure/types.js';
import { startFixture, type Fixture } from '../../dev/azure-emulator/test-fixture.js';

const OTHER_SUB = '00000000-0000-4000-8000-0000000000ff';

describe('ARM adapters address each resource in its own subscription', () => {
  let fx: Fixture;
  let azure: AzureClients;
  let ours: string;
  let elsewhere: string;
  before(async () => {
    fx = await startFixture();
    fx.emu.seed.resourceGroup('ids');
    ours = fx.emu.seed.identity({ resourceGroup: 'ids', name: 'shared' }).id;
    elsewhere = ours.replace(fx.emu.subscriptionId, OTHER_SUB);
    azure = createArmClients({ credential: fx.credential, subscriptionId: fx.emu.subscriptionId, endpoint: fx.emu.armEndpoint });
  });
  after(() => fx.emu.stop());

  it('the wrong subscription: identity.existing in another subscription is never read or written in the operator\'s own', async () => {
    assert.equal((await azure.identities.get(ours)).id.toLowerCase(), ours.toLowerCase(), 'sanity: our own subscription works');
    await assert.rejects(azure.identities.get(elsewhere), NotFoundError, 'read in the other subscription, where it does not exist');
    await assert.rejects(azure.federatedCredentials.list(elsewhere), NotFoundError);
    await assert.rejects(
      azure.federatedCredentials.ensure(elsewhere, { name: 'pid-x', issuer: 'https://issuer.example', subject: 'system:serviceaccount:a:x', audiences: ['api://AzureADTokenExchange'] }),
      NotFoundError,
    );
    assert.deepEqual(fx.emu.state.federatedCredentials(ours), [], 'nothing written on the same-named identity in the operator\'s subscription');
  });

  it('the wrong subscription: role assignments are listed in the subscription asked for', async () => {
    const principal = (await azure.identities.get(ours)).principalId;
    assert.deepEqual(await azure.roles.listForPrincipal(principal, fx.emu.subscriptionId), []);
    // The emulator's operator has no rights there: Azure's answer names the subscription the list went to.
    await assert.rejects(azure.roles.listForPrincipal(principal, OTHER_SUB), (err: Error) => err.message.includes(`/subscriptions/${OTHER_SUB}`));
  });
});
