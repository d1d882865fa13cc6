/** Stable route names: keys of the request log and targets of fault rules. */
export const ROUTE_NAMES = [
  'subscriptions.list',
  'subscriptions.get',
  'resourceGroups.list',
  'resourceGroups.get',
  'resourceGroups.put',
  'identities.listBySubscription',
  'identities.listByResourceGroup',
  'identities.get',
  'identities.put',
  'identities.delete',
  'fic.list',
  'fic.get',
  'fic.put',
  'fic.delete',
  'roleDefinitions.list',
  'roleDefinitions.get',
  'roleAssignments.list',
  'roleAssignments.get',
  'roleAssignments.put',
  'roleAssignments.delete',
  'vmss.get',
  'vmss.patch',
  'compute.operations.get',
  'managedClusters.get',
  'metadata.endpoints',
  'aad.openidConfiguration',
  'aad.instanceDiscovery',
  'aad.keys',
  'aad.token',
  'imds.token',
  'imds.instance',
  'unknown',
] as const;

export type RouteName = (typeof ROUTE_NAMES)[number];

/** Which error shape a route family answers with. */
export type RouteFamily = 'arm' | 'aad' | 'imds';
