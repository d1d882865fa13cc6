/** Harness-side seeding and read-only views of the emulator's Azure (never reachable by Azure clients). */
import { randomUUID } from 'node:crypto';
import { createRoleAssignment, roleAssignmentJson } from './arm/authorization.js';
import { identityType } from './arm/compute.js';
import type { ArmDeps } from './arm/common.js';
import type { IssuerTrust, TrustIssuerOptions } from './issuers.js';
import { roleByGuid, roleByName } from './roles.js';
import type { AzureState, FederatedCredential, Identity, ScaleSet } from './state.js';

const DEFAULT_LOCATION = 'eastus';

/** An identity as tests see it: the stored record without its internals, plus the tenant. */
export type IdentityView = Omit<Identity, 'createdAt' | 'fics'> & { tenantId: string };

/** What the admin API shows of a credential: all of it. */
export type FederatedCredentialView = FederatedCredential;

export interface RoleAssignmentView {
  id: string;
  name: string;
  scope: string;
  roleDefinitionId: string;
  roleName: string;
  principalId: string;
  principalType: string;
}

export interface ScaleSetView {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  /** As ARM reports it: 'None' | 'SystemAssigned' | 'UserAssigned' | 'SystemAssigned, UserAssigned'. */
  identityType: string;
  systemAssignedPrincipalId?: string;
  /** Identity resource id (as the client sent it) → its ids. */
  userAssignedIdentities: Record<string, { clientId: string; principalId: string }>;
  instances: { nodeName: string; ip: string; instanceId: string; providerID: string }[];
}

export interface ResourceGroupView {
  id: string;
  name: string;
  location: string;
}

export interface ServicePrincipalSeed {
  clientId: string;
  clientSecret: string;
  /** Role given at `scope` so ARM authorization passes; default Owner. */
  role?: 'Owner' | 'Contributor' | string;
  /** Default: the subscription. */
  scope?: string;
  /** Default: a new GUID. */
  principalId?: string;
  /** ABAC condition on that role assignment (conditionVersion 2.0). */
  condition?: string;
}

export interface ScaleSetSeed {
  resourceGroup: string;
  name: string;
  location?: string;
  systemAssigned?: boolean;
  instances: { nodeName: string; ip: string; instanceId?: string }[];
}

export interface ManagedClusterSeed {
  resourceGroup: string;
  name: string;
  location?: string;
  nodeResourceGroup: string;
  oidcIssuerUrl: string;
  workloadIdentity?: boolean;
  /** The kubelet identity, created in `resourceGroup` (default: the node resource group) when it does not exist; name default `${name}-agentpool`. */
  kubeletIdentity?: { name?: string; resourceGroup?: string };
  /** networkProfile.networkPlugin; default `azure`. */
  networkPlugin?: 'azure' | 'kubenet' | 'none';
  /** networkProfile.networkPluginMode (`overlay`); default none. */
  networkPluginMode?: string;
  /** networkProfile.networkMode for Azure CNI (`transparent`, or the legacy `bridge`); default none. */
  networkMode?: string;
}

export interface IdentitySeed {
  resourceGroup: string;
  name: string;
  location?: string;
  tags?: Record<string, string>;
}

export interface RoleAssignmentSeed {
  principalId: string;
  /** Role name ('Reader') or GUID. */
  role: string;
  scope: string;
  /** GUID; default random. */
  name?: string;
  /** ABAC condition (conditionVersion 2.0). */
  condition?: string;
}

export interface Seeder {
  resourceGroup(name: string, location?: string): ResourceGroupView;
  servicePrincipal(sp: ServicePrincipalSeed): { clientId: string; principalId: string };
  scaleSet(seed: ScaleSetSeed): ScaleSetView;
  managedCluster(seed: ManagedClusterSeed): { id: string; kubeletIdentity: IdentityView };
  identity(seed: IdentitySeed): IdentityView;
  roleAssignment(seed: RoleAssignmentSeed): RoleAssignmentView;
  trustIssuer(options: TrustIssuerOptions): void;
}

export interface StateViews {
  identities(): IdentityView[];
  federatedCredentials(identityId: string): FederatedCredentialView[];
  roleAssignments(): RoleAssignmentView[];
  scaleSet(resourceGroup: string, name: string): ScaleSetView | undefined;
  resourceGroups(): ResourceGroupView[];
}

export function identityView(i: Identity, tenantId: string): IdentityView {
  return { id: i.id, name: i.name, resourceGroup: i.resourceGroup, location: i.location, tags: { ...i.tags }, clientId: i.clientId, principalId: i.principalId, tenantId };
}

function scaleSetView(ss: ScaleSet): ScaleSetView {
  return {
    id: ss.id,
    name: ss.name,
    resourceGroup: ss.resourceGroup,
    location: ss.location,
    identityType: identityType(ss),
    ...(ss.systemAssigned ? { systemAssignedPrincipalId: ss.systemAssigned.principalId } : {}),
    userAssignedIdentities: Object.fromEntries([...ss.userAssigned.values()].map((u) => [u.id, { clientId: u.clientId, principalId: u.principalId }])),
    instances: ss.instances.map((i) => ({ ...i, providerID: `azure://${ss.id}/virtualMachines/${i.instanceId}` })),
  };
}

function roleAssignmentView(ra: ReturnType<typeof roleAssignmentJson>): RoleAssignmentView {
  const p = ra['properties'] as Record<string, string>;
  const guid = (p['roleDefinitionId'] ?? '').split('/').pop() ?? '';
  return {
    id: String(ra['id']),
    name: String(ra['name']),
    scope: p['scope'] ?? '',
    roleDefinitionId: p['roleDefinitionId'] ?? '',
    roleName: roleByGuid(guid)?.roleName ?? guid,
    principalId: p['principalId'] ?? '',
    principalType: p['principalType'] ?? '',
  };
}

export function createSeeder(deps: ArmDeps, issuers: IssuerTrust): Seeder {
  const { state } = deps;
  const ensureRg = (name: string, location = DEFAULT_LOCATION) => state.resourceGroup(name) ?? state.putResourceGroup(name, location).rg;
  const seedIdentity = (seed: IdentitySeed): Identity => {
    const rg = ensureRg(seed.resourceGroup, seed.location);
    const existing = state.identity(state.identityId(rg.name, seed.name));
    if (existing) return existing;
    // Seeded principals are old: no replication delay applies to them.
    return state.createIdentity(rg.name, seed.name, seed.location ?? rg.location, seed.tags ?? {}, 0);
  };
  const seedRoleAssignment = (seed: RoleAssignmentSeed): RoleAssignmentView => {
    const role = roleByName(seed.role) ?? roleByGuid(seed.role);
    if (!role) throw new Error(`unknown role ${seed.role}`);
    const saved = deps.settings.principalReplicationDelayMs;
    deps.settings.principalReplicationDelayMs = 0;
    try {
      const { assignment } = createRoleAssignment(deps, {
        scope: seed.scope.replace(/\/+$/, ''),
        name: seed.name ?? randomUUID(),
        roleDefinitionId: `/subscriptions/${state.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${role.guid}`,
        principalId: seed.principalId,
        createdBy: 'seed',
        ...(seed.condition !== undefined ? { condition: seed.condition } : {}),
      });
      return roleAssignmentView(roleAssignmentJson(assignment));
    } catch (err) {
      if (err instanceof Error && 'reply' in err) throw new Error(`seeding role assignment failed: ${JSON.stringify((err as { reply: { body: unknown } }).reply.body)}`, { cause: err });
      throw err;
    } finally {
      deps.settings.principalReplicationDelayMs = saved;
    }
  };

  return {
    resourceGroup(name, location = DEFAULT_LOCATION) {
      const rg = ensureRg(name, location);
      return { id: rg.id, name: rg.name, location: rg.location };
    },
    servicePrincipal(sp) {
      const clientId = sp.clientId.toLowerCase();
      const principalId = (sp.principalId ?? randomUUID()).toLowerCase();
      state.servicePrincipals.set(clientId, { clientId, clientSecret: sp.clientSecret, principalId, createdAt: 0 });
      seedRoleAssignment({ principalId, role: sp.role ?? 'Owner', scope: sp.scope ?? state.subscriptionScope, ...(sp.condition !== undefined ? { condition: sp.condition } : {}) });
      return { clientId, principalId };
    },
    scaleSet(seed) {
      const rg = ensureRg(seed.resourceGroup, seed.location);
      const id = state.scaleSetId(rg.name, seed.name);
      const ss: ScaleSet = {
        id,
        name: seed.name,
        resourceGroup: rg.name,
        location: seed.location ?? rg.location,
        uniqueId: randomUUID(),
        userAssigned: new Map(),
        instances: seed.instances.map((i, n) => ({ nodeName: i.nodeName, ip: i.ip, instanceId: i.instanceId ?? String(n) })),
        provisioningState: 'Succeeded',
        ...(seed.systemAssigned ? { systemAssigned: { principalId: randomUUID(), clientId: randomUUID(), createdAt: 0 } } : {}),
      };
      state.scaleSetsById.set(id.toLowerCase(), ss);
      return scaleSetView(ss);
    },
    managedCluster(seed) {
      const rg = ensureRg(seed.resourceGroup, seed.location);
      ensureRg(seed.nodeResourceGroup, seed.location ?? rg.location);
      const kubelet = seedIdentity({
        resourceGroup: seed.kubeletIdentity?.resourceGroup ?? seed.nodeResourceGroup,
        name: seed.kubeletIdentity?.name ?? `${seed.name}-agentpool`,
        location: seed.location ?? rg.location,
      });
      const id = state.clusterId(rg.name, seed.name);
      state.clustersById.set(id.toLowerCase(), {
        id,
        name: seed.name,
        resourceGroup: rg.name,
        location: seed.location ?? rg.location,
        nodeResourceGroup: seed.nodeResourceGroup,
        oidcIssuerUrl: seed.oidcIssuerUrl,
        workloadIdentity: seed.workloadIdentity ?? true,
        kubeletIdentity: { resourceId: kubelet.id, clientId: kubelet.clientId, objectId: kubelet.principalId },
        networkPlugin: seed.networkPlugin ?? 'azure',
        ...(seed.networkPluginMode ? { networkPluginMode: seed.networkPluginMode } : {}),
        ...(seed.networkMode ? { networkMode: seed.networkMode } : {}),
      });
      return { id, kubeletIdentity: identityView(kubelet, state.tenantId) };
    },
    identity(seed) {
      return identityView(seedIdentity(seed), state.tenantId);
    },
    roleAssignment: seedRoleAssignment,
    trustIssuer(options) {
      issuers.trust(options);
    },
  };
}

export function createViews(state: AzureState): StateViews {
  return {
    identities: () => [...state.identitiesById.values()].map((i) => identityView(i, state.tenantId)),
    federatedCredentials(identityId) {
      const identity = state.identity(identityId);
      return identity ? [...identity.fics.values()].map((f) => ({ ...f, audiences: [...f.audiences] })) : [];
    },
    roleAssignments: () => [...state.roleAssignmentsById.values()].map((ra) => roleAssignmentView(roleAssignmentJson(ra))),
    scaleSet(resourceGroup, name) {
      const ss = state.scaleSet(state.scaleSetId(resourceGroup, name));
      return ss ? scaleSetView(ss) : undefined;
    },
    resourceGroups: () => [...state.resourceGroupsByName.values()].map((rg) => ({ id: rg.id, name: rg.name, location: rg.location })),
  };
}
