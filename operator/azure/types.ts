/**
 * The Azure surface the reconciler uses: one narrow interface per concern. `arm/` implements them on the Azure
 * SDKs, `operator/testing/fake-azure.ts` in memory (unit tests only). Every method throws only the typed errors of `errors.ts`.
 */

export interface AzureIdentity {
  /** ARM resource id. */
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  tags: Record<string, string>;
  clientId: string;
  principalId: string;
  tenantId: string;
}

export interface IdentityClient {
  /** Creates the identity or updates its location/tags (PUT). Idempotent. */
  ensure(resourceId: string, location: string, tags: Record<string, string>): Promise<AzureIdentity>;
  /** Throws NotFoundError when it does not exist. */
  get(resourceId: string): Promise<AzureIdentity>;
  /** Already gone counts as success. */
  delete(resourceId: string): Promise<void>;
}

export interface FederatedCredential {
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

/** Writes are serialised per identity (Azure answers 409 to concurrent FIC writes under one identity). */
export interface FederatedCredentialClient {
  list(identityId: string): Promise<FederatedCredential[]>;
  ensure(identityId: string, credential: FederatedCredential): Promise<void>;
  /** Already gone counts as success. */
  delete(identityId: string, name: string): Promise<void>;
}

export interface RoleDefinition {
  /** Full roleDefinitionId, `/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}`. */
  id: string;
  roleName: string;
}

export interface RoleAssignment {
  /** ARM id of the assignment. */
  id: string;
  name: string;
  scope: string;
  roleDefinitionId: string;
  principalId: string;
}

export interface RoleClient {
  /** A role name ("Reader") or roleDefinitionId → its definition. Cached. NotFoundError for an unknown role. */
  resolveRole(role: string, scope: string): Promise<RoleDefinition>;
  /**
   * PUTs the assignment under `name` (deterministic). 409 RoleAssignmentExists counts as success;
   * PrincipalNotFoundError while a new principal replicates.
   */
  ensure(name: string, scope: string, roleDefinitionId: string, principalId: string): Promise<RoleAssignment>;
  /** Already gone counts as success. */
  delete(scope: string, name: string): Promise<void>;
  /** Every assignment of the principal in one subscription (ARM lists per subscription). */
  listForPrincipal(principalId: string, subscriptionId: string): Promise<RoleAssignment[]>;
  /**
   * The principal's assignments at a management group (canonical `/providers/Microsoft.Management/managementGroups/{name}`):
   * a subscription's list does not hold them unless the group is above that subscription.
   */
  listForPrincipalAtManagementGroup(principalId: string, managementGroupScope: string): Promise<RoleAssignment[]>;
}

export interface ScaleSetIdentities {
  id: string;
  /** 'None' | 'SystemAssigned' | 'UserAssigned' | 'SystemAssigned, UserAssigned'. */
  type: string;
  /** User-assigned identity ids currently on the scale set. */
  userAssigned: string[];
}

export interface ScaleSetClient {
  get(scaleSetId: string): Promise<ScaleSetIdentities>;
  /**
   * One PATCH (a long-running operation, awaited) adding and removing user-assigned identities. `onAccepted`
   * runs when Azure has answered the PATCH itself, before the operation is polled to its end.
   */
  patch(scaleSetId: string, add: string[], remove: string[], onAccepted?: () => void): Promise<ScaleSetIdentities>;
}

/** An AKS cluster's pod networking, as `managedClusters.get` reports it in `networkProfile`. */
export interface ClusterNetwork {
  /** `azure`, `kubenet` or `none` (bring your own CNI); undefined when Azure did not say. */
  networkPlugin?: string;
  /** `overlay` for Azure CNI Overlay. */
  networkPluginMode?: string;
  /** Azure CNI's `transparent` (routed, the default) or legacy `bridge` (pods on the azure0 bridge). */
  networkMode?: string;
  networkPolicy?: string;
  networkDataplane?: string;
}

export interface ClusterClient {
  /** The AKS cluster's OIDC issuer URL (managedClusters.get → oidcIssuerProfile.issuerURL). */
  getOidcIssuer(clusterResourceId: string): Promise<string>;
  /** The AKS cluster's network profile (managedClusters.get → networkProfile). */
  getNetwork(clusterResourceId: string): Promise<ClusterNetwork>;
}

export interface AzureClients {
  identities: IdentityClient;
  federatedCredentials: FederatedCredentialClient;
  roles: RoleClient;
  scaleSets: ScaleSetClient;
  cluster: ClusterClient;
}
