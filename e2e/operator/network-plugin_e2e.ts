/**
 * Issue 11 item 7, ARP spoofing on kubenet: the operator reads the AKS cluster's network plugin (through the real
 * arm-containerservice SDK, from the emulator's managed clusters) and refuses to start on kubenet unless told
 * `--allow-network-plugin-kubenet`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ClientSecretCredential } from '@azure/identity';
import { createArmClients } from '../../operator/azure/arm/index.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { condition, createPodIdentity, deletePodIdentity, getPodIdentity, operatorEnv, type OperatorEnv } from './harness.js';

describe('ARP spoofing on kubenet: network plugin detection', () => {
  let env: OperatorEnv;
  const clusters: Record<string, string> = {};
  const running: ManagedProcess[] = [];

  before(async () => {
    env = await operatorEnv();
    env.emu.trustInProcess();
    for (const [name, networkPlugin, networkPluginMode] of [
      ['kubenet-aks', 'kubenet'],
      ['cni-aks', 'azure'],
      ['overlay-aks', 'azure', 'overlay'],
      ['byo-aks', 'none'],
    ] as const) {
      clusters[name] = env.emu.seed.managedCluster({ resourceGroup: 'aks', name, nodeResourceGroup: `mc_${name}`, oidcIssuerUrl: env.cluster.issuer, networkPlugin, ...(networkPluginMode ? { networkPluginMode } : {}) }).id;
    }
    clusters['bridge-aks'] = env.emu.seed.managedCluster({ resourceGroup: 'aks', name: 'bridge-aks', nodeResourceGroup: 'mc_bridge-aks', oidcIssuerUrl: env.cluster.issuer, networkPlugin: 'azure', networkMode: 'bridge' }).id;
  });
  after(async () => {
    await Promise.all(running.map((p) => p.stop()));
    await env?.emu.stop();
  });

  it("the operator's AKS cluster adapter reports kubenet, Azure CNI, overlay and bring-your-own CNI", async () => {
    const credential = new ClientSecretCredential(env.emu.tenantId, env.operator.clientId, env.operator.clientSecret, { authorityHost: env.emu.authorityHost, disableInstanceDiscovery: true });
    const azure = createArmClients({ credential, subscriptionId: env.emu.subscriptionId, endpoint: env.emu.armEndpoint });
    assert.deepEqual(await azure.cluster.getNetwork(clusters['kubenet-aks']!), { networkPlugin: 'kubenet' });
    assert.deepEqual(await azure.cluster.getNetwork(clusters['cni-aks']!), { networkPlugin: 'azure' });
    assert.deepEqual(await azure.cluster.getNetwork(clusters['overlay-aks']!), { networkPlugin: 'azure', networkPluginMode: 'overlay' });
    assert.deepEqual(await azure.cluster.getNetwork(clusters['byo-aks']!), { networkPlugin: 'none' });
    assert.deepEqual(await azure.cluster.getNetwork(clusters['bridge-aks']!), { networkPlugin: 'azure', networkMode: 'bridge' });
  });

  it('on Azure CNI in legacy bridge mode (pods on a Linux bridge, ARP-spoofable like kubenet) the operator refuses to start', async () => {
    const operator = env.startOperator('operator-bridge', ['--aks-cluster-id', clusters['bridge-aks']!]);
    running.push(operator);
    const code = await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 60_000, 'still running'))]);
    assert.notEqual(code, 'still running', `the operator kept running on a bridged Azure CNI:\n${operator.output().slice(-4000)}`);
    assert.notEqual(code, 0, operator.output());
    assert.match(operator.output(), /refusing to start: the cluster uses Azure CNI in bridge mode.*--allow-network-plugin-kubenet/);
  });

  it('on kubenet the operator refuses to start, naming --allow-network-plugin-kubenet, and reconciles nothing', async () => {
    await createPodIdentity(env, 'on-kubenet', { identity: { managed: {} } });
    const operator = env.startOperator('operator-kubenet', ['--aks-cluster-id', clusters['kubenet-aks']!]);
    running.push(operator);
    const code = await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 60_000, 'still running'))]);
    assert.notEqual(code, 0, operator.output());
    assert.notEqual(code, 'still running', `the operator kept running on kubenet:\n${operator.output().slice(-4000)}`);
    assert.match(operator.output(), /refusing to start: the cluster uses the kubenet network plugin.*--allow-network-plugin-kubenet/);
    const pid = await getPodIdentity(env, 'on-kubenet');
    assert.equal(pid?.status, undefined, 'no status written');
    assert.equal(pid?.metadata.finalizers, undefined, 'no finalizer added');
    assert.equal(env.emu.state.identities().filter((i) => i.name.includes('on-kubenet')).length, 0, 'no identity created');
    await deletePodIdentity(env, 'on-kubenet');
  });

  for (const [what, cluster, extra, warning] of [
    ['on kubenet with --allow-network-plugin-kubenet', 'kubenet-aks', ['--allow-network-plugin-kubenet'], /running because --allow-network-plugin-kubenet is set/],
    ['on Azure CNI', 'cni-aks', [], undefined],
  ] as const) {
    it(`${what} the operator runs and reconciles`, async () => {
      const name = `ok-${cluster}`;
      await createPodIdentity(env, name, { identity: { managed: {} } });
      const operator = env.startOperator(`operator-${cluster}`, ['--aks-cluster-id', clusters[cluster]!, ...extra]);
      running.push(operator);
      await waitFor(`${name} Ready`, async () => condition(await getPodIdentity(env, name), 'Ready')?.status === 'True', { timeoutMs: 60_000, intervalMs: 200 }).catch((err: Error) => {
        throw new Error(`${err.message}\n--- operator output ---\n${operator.output().slice(-4000)}`);
      });
      if (warning) assert.match(operator.output(), warning);
      else assert.doesNotMatch(operator.output(), /kubenet/);
      await deletePodIdentity(env, name);
      await waitFor(`${name} gone`, async () => !(await getPodIdentity(env, name)), { timeoutMs: 30_000, intervalMs: 200 });
      await operator.stop();
    });
  }
});
