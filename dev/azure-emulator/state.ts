/** The emulator's in-memory Azure: one subscription, its resource groups and the resources the project touches. */
import { randomUUID } from 'node:crypto';
import { parseCondition, type Condition, type ConditionRequest } from './conditions.js';
import { roleAllows, roleByGuid } from './roles.js';

export interface ResourceGroup {
  id: string;
  name: string;
  location: string;
  tags: Record<string, string>;
}

export interface FederatedCredential {
  id: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
  /** Unix ms from which Azure AD's token endpoint sees this credential (its write + the propagation delay). */
  acceptedFrom: number;
}

export interface Identity {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  tags: Record<string, string>;
  clientId: string;
  principalId: string;
  createdAt: number;
  /** Keyed by lower-cased name. */
  fics: Map<string, FederatedCredential>;
}

export interface ServicePrincipal {
  clientId: string;
  clientSecret: string;
  principalId: string;
  createdAt: number;
}

export interface RoleAssignment {
  id: string;
  name: string;
  scope: string;
  roleDefinitionId: string;
  roleGuid: string;
  principalId: string;
  principalType: string;
  createdOn: string;
  createdBy: string;
  /** ABAC condition (conditionVersion 2.0): the assignment grants only requests for which it holds. */
  condition?: string;
  conditionVersion?: string;
}

/** Request and resource attributes an ABAC condition can test (see conditions.ts). */
export type AuthzAttributes = Omit<ConditionRequest, 'action'>;

/** Why a request was refused: no role grants the action, or only roles whose condition does not hold. */
export type AuthzDecision = 'allowed' | 'denied' | 'conditionNotMet';

const compiledConditions = new WeakMap<RoleAssignment, Condition>();

function conditionOf(ra: RoleAssignment): Condition | undefined {
  if (!ra.condition) return undefined;
  let c = compiledConditions.get(ra);
  if (!c) compiledConditions.set(ra, (c = parseCondition(ra.condition)));
  return c;
}

export interface ScaleSetInstance {
  nodeName: string;
  ip: string;
  instanceId: string;
}

export interface UserAssignedRef {
  /** The identity id as the client sent it (Azure echoes the caller's casing). */
  id: string;
  clientId: string;
  principalId: string;
}

export interface ScaleSet {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  uniqueId: string;
  systemAssigned?: { principalId: string; clientId: string; createdAt: number };
  /** Keyed by lower-cased identity id. */
  userAssigned: Map<string, UserAssignedRef>;
  instances: ScaleSetInstance[];
  provisioningState: string;
}

export interface ManagedCluster {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  nodeResourceGroup: string;
  oidcIssuerUrl: string;
  workloadIdentity: boolean;
  kubeletIdentity: { resourceId: string; clientId: string; objectId: string };
  /** networkProfile.networkPlugin: `azure`, `kubenet` or `none`. */
  networkPlugin: string;
  /** networkProfile.networkPluginMode, e.g. `overlay` (Azure CNI Overlay). */
  networkPluginMode?: string;
  /** networkProfile.networkMode for Azure CNI: `transparent` or the legacy `bridge`. */
  networkMode?: string;
}

export interface AsyncOperation {
  id: string;
  startedAt: number;
  completesAt: number;
}

export interface Principal {
  principalId: string;
  clientId: string;
  createdAt: number;
  kind: 'ServicePrincipal' | 'ManagedIdentity' | 'SystemAssigned';
}

const lower = (s: string) => s.toLowerCase();

export class AzureState {
  readonly resourceGroupsByName = new Map<string, ResourceGroup>();
  readonly identitiesById = new Map<string, Identity>();
  readonly servicePrincipals = new Map<string, ServicePrincipal>();
  readonly roleAssignmentsById = new Map<string, RoleAssignment>();
  readonly scaleSetsById = new Map<string, ScaleSet>();
  readonly clustersById = new Map<string, ManagedCluster>();
  readonly operations = new Map<string, AsyncOperation>();

  constructor(
    readonly tenantId: string,
    readonly subscriptionId: string,
  ) {}

  get subscriptionScope(): string {
    return `/subscriptions/${this.subscriptionId}`;
  }

  isOurSubscription(id: string): boolean {
    return lower(id) === lower(this.subscriptionId);
  }

  resourceGroup(name: string): ResourceGroup | undefined {
    return this.resourceGroupsByName.get(lower(name));
  }

  putResourceGroup(name: string, location: string, tags: Record<string, string> = {}): { rg: ResourceGroup; created: boolean } {
    const existing = this.resourceGroup(name);
    if (existing) {
      existing.tags = tags;
      return { rg: existing, created: false };
    }
    const rg: ResourceGroup = { id: `${this.subscriptionScope}/resourceGroups/${name}`, name, location, tags };
    this.resourceGroupsByName.set(lower(name), rg);
    return { rg, created: true };
  }

  identityId(rg: string, name: string): string {
    return `${this.subscriptionScope}/resourceGroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
  }

  identity(id: string): Identity | undefined {
    return this.identitiesById.get(lower(id));
  }

  identityByClientId(clientId: string): Identity | undefined {
    const c = lower(clientId);
    for (const i of this.identitiesById.values()) if (i.clientId === c) return i;
    return undefined;
  }

  identityByPrincipalId(principalId: string): Identity | undefined {
    const p = lower(principalId);
    for (const i of this.identitiesById.values()) if (i.principalId === p) return i;
    return undefined;
  }

  createIdentity(rgName: string, name: string, location: string, tags: Record<string, string>, createdAt = Date.now()): Identity {
    const rg = this.resourceGroup(rgName);
    const identity: Identity = {
      id: this.identityId(rg?.name ?? rgName, name),
      name,
      resourceGroup: rg?.name ?? rgName,
      location,
      tags,
      clientId: randomUUID(),
      principalId: randomUUID(),
      createdAt,
      fics: new Map(),
    };
    this.identitiesById.set(lower(identity.id), identity);
    return identity;
  }

  deleteIdentity(id: string): boolean {
    return this.identitiesById.delete(lower(id)); // its federated credentials go with it
  }

  scaleSetId(rg: string, name: string): string {
    return `${this.subscriptionScope}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`;
  }

  scaleSet(id: string): ScaleSet | undefined {
    return this.scaleSetsById.get(lower(id));
  }

  instanceByIp(ip: string): { scaleSet: ScaleSet; instance: ScaleSetInstance } | undefined {
    for (const scaleSet of this.scaleSetsById.values()) {
      const instance = scaleSet.instances.find((i) => i.ip === ip);
      if (instance) return { scaleSet, instance };
    }
    return undefined;
  }

  clusterId(rg: string, name: string): string {
    return `${this.subscriptionScope}/resourceGroups/${rg}/providers/Microsoft.ContainerService/managedClusters/${name}`;
  }

  /** Every principal the directory knows, with when it was created (for replication delay). */
  principal(principalId: string): Principal | undefined {
    const p = lower(principalId);
    for (const sp of this.servicePrincipals.values()) {
      if (sp.principalId === p) return { principalId: p, clientId: sp.clientId, createdAt: sp.createdAt, kind: 'ServicePrincipal' };
    }
    const identity = this.identityByPrincipalId(p);
    if (identity) return { principalId: p, clientId: identity.clientId, createdAt: identity.createdAt, kind: 'ManagedIdentity' };
    for (const ss of this.scaleSetsById.values()) {
      if (ss.systemAssigned?.principalId === p) return { principalId: p, clientId: ss.systemAssigned.clientId, createdAt: ss.systemAssigned.createdAt, kind: 'SystemAssigned' };
    }
    return undefined;
  }

  /** Whether a role assignment scope names something that exists. */
  scopeProblem(scope: string): { code: string; message: string } | undefined {
    const parts = scope.split('/').filter(Boolean);
    if (parts.length < 2 || lower(parts[0] ?? '') !== 'subscriptions') {
      return { code: 'InvalidScope', message: `The scope '${scope}' is not valid.` };
    }
    if (!this.isOurSubscription(parts[1] ?? '')) return { code: 'SubscriptionNotFound', message: `The subscription '${parts[1]}' could not be found.` };
    if (parts.length === 2) return undefined;
    if (lower(parts[2] ?? '') !== 'resourcegroups' || parts.length < 4) return { code: 'InvalidScope', message: `The scope '${scope}' is not valid.` };
    if (!this.resourceGroup(parts[3] ?? '')) return { code: 'ResourceGroupNotFound', message: `Resource group '${parts[3]}' could not be found.` };
    if (parts.length === 4) return undefined;
    if (!this.resourceExists(scope)) return { code: 'ResourceNotFound', message: `The Resource '${parts.slice(5).join('/')}' under resource group '${parts[3]}' was not found.` };
    return undefined;
  }

  resourceExists(id: string): boolean {
    const l = lower(id.replace(/\/+$/, ''));
    if (this.identitiesById.has(l) || this.scaleSetsById.has(l) || this.clustersById.has(l)) return true;
    const fic = /^(.*)\/federatedidentitycredentials\/([^/]+)$/.exec(l);
    if (fic) return this.identitiesById.get(fic[1] ?? '')?.fics.has(fic[2] ?? '') ?? false;
    return false;
  }

  /** ARM authorization: does any role assigned to `principalId` at `scope` or above grant `action`? */
  can(principalId: string, action: string, scope: string, attributes: AuthzAttributes = {}): boolean {
    return this.authorize(principalId, action, scope, attributes) === 'allowed';
  }

  /**
   * ARM authorization with ABAC: an assignment whose role grants `action` allows the request when it has no
   * condition or its condition holds for the request's attributes.
   */
  authorize(principalId: string, action: string, scope: string, attributes: AuthzAttributes = {}): AuthzDecision {
    const p = lower(principalId);
    let conditionNotMet = false;
    for (const ra of this.roleAssignmentsById.values()) {
      if (ra.principalId !== p || !isAtOrAbove(ra.scope, scope)) continue;
      const role = roleByGuid(ra.roleGuid);
      if (!role || !roleAllows(role, action)) continue;
      const condition = conditionOf(ra);
      if (!condition || condition({ action, ...attributes })) return 'allowed';
      conditionNotMet = true;
    }
    return conditionNotMet ? 'conditionNotMet' : 'denied';
  }
}

/** True when `ancestor` equals `scope` or is a parent scope of it (case-insensitive). */
export function isAtOrAbove(ancestor: string, scope: string): boolean {
  const a = lower(ancestor.replace(/\/+$/, ''));
  const s = lower(scope.replace(/\/+$/, ''));
  return a === s || s.startsWith(`${a}/`) || a === '';
}
