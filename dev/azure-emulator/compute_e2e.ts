/** Contract: @azure/arm-compute scale-set identities through the LRO poller, and @azure/arm-containerservice. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ComputeManagementClient } from '@azure/arm-compute';
import { ContainerServiceClient } from '@azure/arm-containerservice';
import { ClientSecretCredential } from '@azure/identity';
import { startFixture, type Fixture, restError } from './test-fixture.js';

describe('arm-compute scale-set identities and arm-containerservice clusters', () => {
  let fx: Fixture;
  let compute: ComputeManagementClient;
  before(async () => {
    fx = await startFixture({ lroDurationMs: 300 });
    fx.emu.seed.scaleSet({
      resourceGroup: 'mc_rg_aks_eastus',
      name: 'aks-nodepool1-vmss',
      systemAssigned: true,
      instances: [{ nodeName: 'aks-nodepool1-000000', ip: '127.0.0.11' }],
    });
    compute = new ComputeManagementClient(fx.credential, fx.emu.subscriptionId, { endpoint: fx.emu.armEndpoint });
  });
  after(() => fx.emu.stop());

  it('adds and removes user-assigned identities with beginUpdateAndWait, keeping SystemAssigned', async () => {
    const a = fx.emu.seed.identity({ resourceGroup: 'rg-ids', name: 'pod-id-a' });
    const b = fx.emu.seed.identity({ resourceGroup: 'rg-ids', name: 'pod-id-b' });
    const before = await compute.virtualMachineScaleSets.get('mc_rg_aks_eastus', 'aks-nodepool1-vmss');
    assert.equal(before.identity?.type, 'SystemAssigned');
    const systemPrincipal = before.identity?.principalId;
    assert.ok(systemPrincipal);

    const added = await compute.virtualMachineScaleSets.beginUpdateAndWait(
      'mc_rg_aks_eastus',
      'aks-nodepool1-vmss',
      { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [a.id]: {}, [b.id]: {} } } },
      { updateIntervalInMs: 50 },
    );
    assert.equal(added.identity?.type, 'SystemAssigned, UserAssigned');
    assert.equal(added.identity?.principalId, systemPrincipal);
    assert.deepEqual(Object.keys(added.identity?.userAssignedIdentities ?? {}).sort(), [a.id, b.id].sort());
    assert.equal(added.identity?.userAssignedIdentities?.[a.id]?.clientId, a.clientId);
    // The poller polled the Azure-AsyncOperation URL until Succeeded, then fetched the resource.
    assert.ok(fx.emu.requests.count('compute.operations.get') >= 2, JSON.stringify(fx.emu.requests.counts()));
    assert.equal(fx.emu.requests.counts()['PATCH vmss.patch'], 1);

    const removed = await compute.virtualMachineScaleSets.beginUpdateAndWait(
      'mc_rg_aks_eastus',
      'aks-nodepool1-vmss',
      // The SDK model has no null value type, but the wire needs null to remove.
      { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [a.id]: null as unknown as object } } },
      { updateIntervalInMs: 50 },
    );
    assert.deepEqual(Object.keys(removed.identity?.userAssignedIdentities ?? {}), [b.id]);
    const view = fx.emu.state.scaleSet('mc_rg_aks_eastus', 'aks-nodepool1-vmss');
    assert.equal(view?.identityType, 'SystemAssigned, UserAssigned');
    assert.deepEqual(Object.keys(view?.userAssignedIdentities ?? {}), [b.id]);
    assert.equal(view?.instances[0]?.providerID, `azure://${view?.id}/virtualMachines/0`);
    fx.emu.settings.lroDurationMs = 0; // the other tests need no multi-poll operations
  });

  it('refuses an identity that does not exist, and more than 100 user-assigned identities', async () => {
    const missing = `/subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope`;
    const err = await restError(
      compute.virtualMachineScaleSets.beginUpdateAndWait('mc_rg_aks_eastus', 'aks-nodepool1-vmss', { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [missing]: {} } } }),
    );
    assert.equal(err.statusCode, 400);
    assert.equal(err.code, 'FailedIdentityOperation');

    const many: Record<string, object> = {};
    for (let i = 0; i < 101; i++) many[fx.emu.seed.identity({ resourceGroup: 'rg-many', name: `many-${i}` }).id] = {};
    const tooMany = await restError(
      compute.virtualMachineScaleSets.beginUpdateAndWait('mc_rg_aks_eastus', 'aks-nodepool1-vmss', { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: many } }),
    );
    assert.equal(tooMany.statusCode, 400);
    assert.match(tooMany.message, /maximum of 100/);
  });

  it('needs assign permission on the identity (LinkedAuthorizationFailed)', async () => {
    const secret = randomUUID();
    const vmContributor = fx.emu.seed.servicePrincipal({
      clientId: randomUUID(),
      clientSecret: secret,
      role: 'Virtual Machine Contributor',
      scope: `/subscriptions/${fx.emu.subscriptionId}/resourceGroups/mc_rg_aks_eastus`,
    });
    const credential = new ClientSecretCredential(fx.emu.tenantId, vmContributor.clientId, secret, { authorityHost: fx.emu.authorityHost, disableInstanceDiscovery: true });
    const limited = new ComputeManagementClient(credential, fx.emu.subscriptionId, { endpoint: fx.emu.armEndpoint });
    const c = fx.emu.seed.identity({ resourceGroup: 'rg-ids', name: 'pod-id-c' });
    const err = await restError(
      limited.virtualMachineScaleSets.beginUpdateAndWait('mc_rg_aks_eastus', 'aks-nodepool1-vmss', { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [c.id]: {} } } }),
    );
    assert.equal(err.statusCode, 403);
    assert.equal(err.code, 'LinkedAuthorizationFailed');
    fx.emu.seed.roleAssignment({ principalId: vmContributor.principalId, role: 'Managed Identity Operator', scope: c.id });
    await limited.virtualMachineScaleSets.beginUpdateAndWait(
      'mc_rg_aks_eastus',
      'aks-nodepool1-vmss',
      { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [c.id]: {} } } },
      { updateIntervalInMs: 50 },
    );
  });

  it('sending only "UserAssigned" drops the system-assigned identity, as on Azure', async () => {
    fx.emu.seed.scaleSet({ resourceGroup: 'rg-sys', name: 'vmss-sys', systemAssigned: true, instances: [{ nodeName: 'n-sys', ip: '127.0.0.19' }] });
    const d = fx.emu.seed.identity({ resourceGroup: 'rg-ids', name: 'pod-id-d' });
    const result = await compute.virtualMachineScaleSets.beginUpdateAndWait(
      'rg-sys',
      'vmss-sys',
      { identity: { type: 'UserAssigned', userAssignedIdentities: { [d.id]: {} } } },
      { updateIntervalInMs: 50 },
    );
    assert.equal(result.identity?.type, 'UserAssigned');
  });

  it('gets a managed cluster with its issuer, workload identity and kubelet identity', async () => {
    const seeded = fx.emu.seed.managedCluster({
      resourceGroup: 'rg-aks',
      name: 'aks1',
      nodeResourceGroup: 'mc_rg_aks_eastus',
      oidcIssuerUrl: 'https://127.0.0.1:6443',
      workloadIdentity: true,
    });
    const aks = new ContainerServiceClient(fx.credential, fx.emu.subscriptionId, { endpoint: fx.emu.armEndpoint });
    const cluster = await aks.managedClusters.get('rg-aks', 'aks1');
    assert.equal(cluster.id, seeded.id);
    assert.equal(cluster.nodeResourceGroup, 'mc_rg_aks_eastus');
    assert.equal(cluster.oidcIssuerProfile?.issuerURL, 'https://127.0.0.1:6443');
    assert.equal(cluster.oidcIssuerProfile?.enabled, true);
    assert.equal(cluster.securityProfile?.workloadIdentity?.enabled, true);
    const kubelet = cluster.identityProfile?.['kubeletidentity'];
    assert.equal(kubelet?.clientId, seeded.kubeletIdentity.clientId);
    assert.equal(kubelet?.objectId, seeded.kubeletIdentity.principalId);
    assert.equal(kubelet?.resourceId, seeded.kubeletIdentity.id);
    const missing = await restError(aks.managedClusters.get('rg-aks', 'nope'));
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.code, 'ResourceNotFound');
  });
});
