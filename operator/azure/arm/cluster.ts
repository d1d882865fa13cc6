import type { ContainerServiceClient, ManagedCluster } from '@azure/arm-containerservice';
import { parseTyped } from '../arm-id.js';
import type { AzureCall } from '../instrument.js';
import type { ClusterClient, ClusterNetwork } from '../types.js';

export class ArmClusterClient implements ClusterClient {
  constructor(private readonly client: () => Promise<ContainerServiceClient>, private readonly call: AzureCall) {}

  private async get(clusterResourceId: string): Promise<ManagedCluster & { name?: string }> {
    const p = parseTyped(clusterResourceId, 'Microsoft.ContainerService', 'managedClusters', 'an AKS cluster id');
    if (!p.ok) throw new Error(`not an AKS cluster resource id: ${JSON.stringify(clusterResourceId)} ${p.problem}`);
    const client = await this.client();
    return this.call('managedClusters.get', () => client.managedClusters.get(p.value.resourceGroup!, p.value.name!));
  }

  async getOidcIssuer(clusterResourceId: string): Promise<string> {
    const mc = await this.get(clusterResourceId);
    const issuer = mc.oidcIssuerProfile?.issuerURL;
    if (!mc.oidcIssuerProfile?.enabled || !issuer) throw new Error(`AKS cluster ${mc.name ?? clusterResourceId} has no OIDC issuer (enable oidcIssuerProfile)`);
    return issuer;
  }

  async getNetwork(clusterResourceId: string): Promise<ClusterNetwork> {
    const n = (await this.get(clusterResourceId)).networkProfile ?? {};
    return {
      ...(n.networkPlugin ? { networkPlugin: n.networkPlugin } : {}),
      ...(n.networkPluginMode ? { networkPluginMode: n.networkPluginMode } : {}),
      ...(n.networkMode ? { networkMode: n.networkMode } : {}),
      ...(n.networkPolicy ? { networkPolicy: n.networkPolicy } : {}),
      ...(n.networkDataplane ? { networkDataplane: n.networkDataplane } : {}),
    };
  }
}
