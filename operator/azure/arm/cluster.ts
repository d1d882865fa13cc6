import type { ContainerServiceClient } from '@azure/arm-containerservice';
import { parseResourceId } from '../ids.js';
import type { AzureCall } from '../instrument.js';
import type { ClusterClient } from '../types.js';

export class ArmClusterClient implements ClusterClient {
  constructor(private readonly client: () => Promise<ContainerServiceClient>, private readonly call: AzureCall) {}

  async getOidcIssuer(clusterResourceId: string): Promise<string> {
    const p = parseResourceId(clusterResourceId);
    if (!p || p.type.toLowerCase() !== 'managedclusters') throw new Error(`not an AKS cluster resource id: ${clusterResourceId}`);
    const client = await this.client();
    const mc = await this.call('managedClusters.get', () => client.managedClusters.get(p.resourceGroup, p.name));
    const issuer = mc.oidcIssuerProfile?.issuerURL;
    if (!mc.oidcIssuerProfile?.enabled || !issuer) throw new Error(`AKS cluster ${p.name} has no OIDC issuer (enable oidcIssuerProfile)`);
    return issuer;
  }
}
