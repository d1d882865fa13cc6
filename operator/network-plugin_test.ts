import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from '../lib/log.js';
import { FakeAzure } from './testing/fake-azure.js';
import { checkNetworkPlugin, NetworkPluginRefusedError } from './network-plugin.js';

const CLUSTER = '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks';

function recordingLogger() {
  const lines: { level: string; message: string }[] = [];
  const at = (level: string) => (message: string) => void lines.push({ level, message });
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger };
}

describe('ARP spoofing on kubenet: the network plugin check at startup', () => {
  it('refuses kubenet by default, with a log line naming the opt-in flag', async () => {
    const azure = new FakeAzure();
    azure.clusterNetwork = { networkPlugin: 'kubenet' };
    const { lines, logger } = recordingLogger();
    await assert.rejects(checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }, logger), (err: unknown) => err instanceof NetworkPluginRefusedError && /--allow-network-plugin-kubenet/.test(err.message));
    assert.equal(lines.filter((l) => l.level === 'error' && /refusing to start: the cluster uses the kubenet network plugin/.test(l.message) && /--allow-network-plugin-kubenet/.test(l.message)).length, 1);
  });

  it('refuses a cluster that does not report its plugin (fail closed)', async () => {
    const azure = new FakeAzure();
    azure.clusterNetwork = {};
    await assert.rejects(checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }), NetworkPluginRefusedError);
  });

  it('refuses Azure CNI in legacy bridge mode (networkMode bridge: pods share the azure0 bridge, so ARP spoofing works as on kubenet)', async () => {
    for (const network of [{ networkPlugin: 'azure', networkMode: 'bridge' }, { networkPlugin: 'Azure', networkMode: 'Bridge' }]) {
      const azure = new FakeAzure();
      azure.clusterNetwork = network;
      const { lines, logger } = recordingLogger();
      await assert.rejects(checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }, logger), (err: unknown) => err instanceof NetworkPluginRefusedError && /bridge/.test(err.message) && /--allow-network-plugin-kubenet/.test(err.message));
      assert.ok(lines.some((l) => l.level === 'error' && /bridge mode/.test(l.message)), JSON.stringify(lines));
    }
    const azure = new FakeAzure();
    azure.clusterNetwork = { networkPlugin: 'azure', networkMode: 'transparent' };
    assert.deepEqual(await checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }), { networkPlugin: 'azure', networkMode: 'transparent' });
  });

  it('runs on kubenet with --allow-network-plugin-kubenet, warning about NET_RAW', async () => {
    const azure = new FakeAzure();
    azure.clusterNetwork = { networkPlugin: 'kubenet' };
    const { lines, logger } = recordingLogger();
    assert.deepEqual(await checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: true }, logger), { networkPlugin: 'kubenet' });
    assert.ok(lines.some((l) => l.level === 'warn' && /NET_RAW/.test(l.message)));
  });

  it('accepts Azure CNI (also overlay) quietly, and warns for a bring-your-own CNI', async () => {
    for (const network of [{ networkPlugin: 'azure' }, { networkPlugin: 'azure', networkPluginMode: 'overlay' }]) {
      const azure = new FakeAzure();
      azure.clusterNetwork = network;
      const { lines, logger } = recordingLogger();
      await checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }, logger);
      assert.deepEqual(lines.filter((l) => l.level !== 'info'), []);
    }
    const azure = new FakeAzure();
    azure.clusterNetwork = { networkPlugin: 'none' };
    const { lines, logger } = recordingLogger();
    await checkNetworkPlugin(azure.cluster, { aksClusterId: CLUSTER, allowKubenet: false }, logger);
    assert.ok(lines.some((l) => l.level === 'warn' && /own CNI/.test(l.message)));
  });

  it('without --aks-cluster-id it reads nothing and says the plugin was not checked', async () => {
    const azure = new FakeAzure();
    const { lines, logger } = recordingLogger();
    assert.equal(await checkNetworkPlugin(azure.cluster, { allowKubenet: false }, logger), undefined);
    assert.equal(azure.calls.length, 0);
    assert.ok(lines.some((l) => /network plugin not checked/.test(l.message)));
  });
});
