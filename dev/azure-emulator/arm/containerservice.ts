/** Microsoft.ContainerService: managed cluster GET (properties nested on the wire, as ARM sends them). */
import type { Route } from '../router.js';
import type { ManagedCluster } from '../state.js';
import { authorize, notFound, requireResourceGroup, type ArmDeps } from './common.js';

const TYPE = 'Microsoft.ContainerService/ManagedClusters';

export function managedClusterJson(c: ManagedCluster): Record<string, unknown> {
  return {
    id: c.id,
    name: c.name,
    type: TYPE,
    location: c.location,
    sku: { name: 'Base', tier: 'Free' },
    properties: {
      provisioningState: 'Succeeded',
      powerState: { code: 'Running' },
      kubernetesVersion: '1.30.0',
      dnsPrefix: c.name,
      fqdn: `${c.name}.hcp.${c.location}.azmk8s.io`,
      nodeResourceGroup: c.nodeResourceGroup,
      enableRBAC: true,
      oidcIssuerProfile: { enabled: true, issuerURL: c.oidcIssuerUrl },
      securityProfile: { workloadIdentity: { enabled: c.workloadIdentity } },
      identityProfile: { kubeletidentity: { ...c.kubeletIdentity } },
      podIdentityProfile: { enabled: false },
      networkProfile: {
        networkPlugin: c.networkPlugin,
        ...(c.networkPluginMode ? { networkPluginMode: c.networkPluginMode } : {}),
        ...(c.networkMode ? { networkMode: c.networkMode } : {}),
        ...(c.networkPlugin === 'kubenet' || c.networkPluginMode === 'overlay' ? { podCidr: '10.244.0.0/16' } : {}),
        serviceCidr: '10.0.0.0/16',
        dnsServiceIP: '10.0.0.10',
        outboundType: 'loadBalancer',
        loadBalancerSku: 'standard',
      },
      agentPoolProfiles: [{ name: 'nodepool1', count: 1, vmSize: 'Standard_D2s_v3', type: 'VirtualMachineScaleSets', mode: 'System', osType: 'Linux' }],
    },
  };
}

export function containerServiceRoutes(deps: ArmDeps): Route[] {
  const { state } = deps;
  return [
    {
      name: 'managedClusters.get',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.ContainerService\/managedClusters\/([^/]+)$/i,
      handle(ctx) {
        const [sub = '', rg = '', name = ''] = ctx.params;
        const id = state.clusterId(rg, name);
        authorize(deps, ctx, 'Microsoft.ContainerService/managedClusters/read', id);
        requireResourceGroup(deps, sub, rg);
        const cluster = state.clustersById.get(id.toLowerCase());
        if (!cluster) notFound('Microsoft.ContainerService/managedClusters', name, rg);
        return { status: 200, body: managedClusterJson(cluster) };
      },
    },
  ];
}
