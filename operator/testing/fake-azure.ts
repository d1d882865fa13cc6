import { randomUUID } from 'node:crypto';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import { ConflictError, LimitExceededError, NotFoundError, PrincipalNotFoundError } from '../azure/errors.js';
import { isRoleDefinitionId, normalizeId, parseIdentityId, roleDefinitionGuid } from '../azure/ids.js';
import type {
  AzureClients,
  AzureIdentity,
  ClusterClient,
  ClusterNetwork,
  FederatedCredential,
  FederatedCredentialClient,
  IdentityClient,
  RoleAssignment,
  RoleClient,
  RoleDefinition,
  ScaleSetClient,
  ScaleSetIdentities,
} from '../azure/types.js';

/**
 * What ARM ends up acting on: the SDKs send the scope unencoded and their URL handling (WHATWG) resolves dot
 * segments, percent-escaped dots and backslashes, and drops tabs, so Azure creates and reports the resolved scope.
 */
const resolvedLikeTheSdk = (scope: string): string => new URL(`https://management.azure.com/${scope.replace(/^\/+/, '')}`).pathname.replace(/\/+$/, '');

/** A scale set's ARM id, as AKS names node pools' scale sets. */
export function scaleSetResourceId(subscriptionId: string, resourceGroup: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`;
}

export const BUILT_IN_ROLES: Record<string, string> = {
  Reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7',
  Contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c',
  Owner: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  'Managed Identity Operator': 'f1a07417-d97a-45cb-824c-7a7467783830',
  'Storage Blob Data Reader': '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
};

/**
 * In-memory Azure for unit tests: the same behaviours the reconciler relies on (404s, 409 RoleAssignmentExists,
 * concurrent-FIC-write 409, limits, PrincipalNotFound), plus a call log and one-shot failures.
 */
export class FakeAzure implements AzureClients {
  readonly tenantId = '72f988bf-0000-4000-8000-000000000001';
  readonly identitiesById = new Map<string, AzureIdentity>();
  readonly fics = new Map<string, FederatedCredential[]>();
  readonly assignments = new Map<string, RoleAssignment>();
  readonly scaleSetState = new Map<string, ScaleSetIdentities>();
  readonly calls: string[] = [];
  oidcIssuer = 'https://oidc.example/issuer';
  clusterNetwork: ClusterNetwork = { networkPlugin: 'azure' };
  /** Role assignment PUTs for principals created within this many calls fail with PrincipalNotFound. */
  principalNotFoundTimes = 0;
  private readonly failures: { operation: string; error: Error }[] = [];
  private readonly holds: { operation: string; gate: Promise<void> }[] = [];
  private readonly ficWritesInFlight = new Map<string, number>();
  maxConcurrentFicWrites = 0;

  constructor(readonly subscriptionId = '00000000-0000-4000-8000-000000000001') {}

  /** The next call of `operation` (e.g. 'roleAssignments.create') throws `error`. */
  failNext(operation: string, error: Error): void {
    this.failures.push({ operation, error });
  }

  callsOf(operation: string): number {
    return this.calls.filter((c) => c === operation).length;
  }

  /** The next call of `operation` is logged at once, then waits until `release()`: to observe what runs beside it. */
  hold(operation: string): { release(): void } {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    this.holds.push({ operation, gate });
    return { release };
  }

  private async enter(operation: string): Promise<void> {
    this.calls.push(operation);
    const h = this.holds.findIndex((x) => x.operation === operation);
    if (h >= 0) await this.holds.splice(h, 1)[0]!.gate;
    const i = this.failures.findIndex((f) => f.operation === operation);
    if (i >= 0) {
      const [f] = this.failures.splice(i, 1);
      throw f!.error;
    }
    await Promise.resolve();
  }

  seedIdentity(resourceId: string, tags: Record<string, string> = {}): AzureIdentity {
    const p = parseIdentityId(resourceId)!;
    const identity: AzureIdentity = { id: resourceId, name: p.name, resourceGroup: p.resourceGroup, location: 'eastus', tags, clientId: randomUUID(), principalId: randomUUID(), tenantId: this.tenantId };
    this.identitiesById.set(normalizeId(resourceId), identity);
    return identity;
  }

  seedScaleSet(id: string, userAssigned: string[] = [], type = 'None'): void {
    this.scaleSetState.set(normalizeId(id), { id, type, userAssigned });
  }

  readonly identities: IdentityClient = {
    ensure: async (resourceId, location, tags) => {
      await this.enter('identities.createOrUpdate');
      const key = normalizeId(resourceId);
      const existing = this.identitiesById.get(key);
      if (existing) {
        existing.tags = { ...tags };
        existing.location = location;
        return { ...existing };
      }
      const p = parseIdentityId(resourceId);
      if (!p) throw new Error(`bad id ${resourceId}`);
      const identity: AzureIdentity = { id: resourceId, name: p.name, resourceGroup: p.resourceGroup, location, tags: { ...tags }, clientId: randomUUID(), principalId: randomUUID(), tenantId: this.tenantId };
      this.identitiesById.set(key, identity);
      return { ...identity };
    },
    get: async (resourceId) => {
      await this.enter('identities.get');
      const found = this.identitiesById.get(normalizeId(resourceId));
      if (!found) throw new NotFoundError(`identity ${resourceId} not found`, 'identities.get', 404);
      return { ...found, tags: { ...found.tags } };
    },
    delete: async (resourceId) => {
      await this.enter('identities.delete');
      this.identitiesById.delete(normalizeId(resourceId));
      this.fics.delete(normalizeId(resourceId));
    },
  };

  private async ficWrite<T>(identityId: string, fn: () => T): Promise<T> {
    const key = normalizeId(identityId);
    const n = (this.ficWritesInFlight.get(key) ?? 0) + 1;
    this.ficWritesInFlight.set(key, n);
    this.maxConcurrentFicWrites = Math.max(this.maxConcurrentFicWrites, n);
    try {
      if (n > 1) throw new ConflictError('concurrent FIC writes', 'federatedCredentials.createOrUpdate', 409, 'ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity');
      await new Promise((r) => setImmediate(r));
      return fn();
    } finally {
      this.ficWritesInFlight.set(key, (this.ficWritesInFlight.get(key) ?? 1) - 1);
    }
  }

  readonly federatedCredentials: FederatedCredentialClient = {
    list: async (identityId) => {
      await this.enter('federatedCredentials.list');
      if (!this.identitiesById.has(normalizeId(identityId))) throw new NotFoundError('identity not found', 'federatedCredentials.list', 404);
      return (this.fics.get(normalizeId(identityId)) ?? []).map((f) => ({ ...f }));
    },
    ensure: async (identityId, credential) => {
      await this.enter('federatedCredentials.createOrUpdate');
      await this.ficWrite(identityId, () => {
        const list = this.fics.get(normalizeId(identityId)) ?? [];
        const i = list.findIndex((f) => f.name === credential.name);
        if (i < 0 && list.length >= 20) throw new LimitExceededError('limit of 20 federated credentials', 'federatedCredentials.createOrUpdate', 400, 'FederatedIdentityCredentialsLimitExceeded');
        const value = { ...credential, audiences: credential.audiences.length ? credential.audiences : [TOKEN_EXCHANGE_AUDIENCE] };
        if (i < 0) list.push(value);
        else list[i] = value;
        this.fics.set(normalizeId(identityId), list);
      });
    },
    delete: async (identityId, name) => {
      await this.enter('federatedCredentials.delete');
      await this.ficWrite(identityId, () => {
        const list = this.fics.get(normalizeId(identityId)) ?? [];
        this.fics.set(normalizeId(identityId), list.filter((f) => f.name !== name));
      });
    },
  };

  readonly roles: RoleClient = {
    resolveRole: async (role): Promise<RoleDefinition> => {
      await this.enter('roleDefinitions.resolve');
      const guid = isRoleDefinitionId(role) ? roleDefinitionGuid(role) : BUILT_IN_ROLES[Object.keys(BUILT_IN_ROLES).find((n) => n.toLowerCase() === role.toLowerCase()) ?? ''];
      const name = Object.entries(BUILT_IN_ROLES).find(([, g]) => g === guid)?.[0];
      if (!guid || !name) throw new NotFoundError(`role "${role}" does not exist`, 'roleDefinitions.resolve', 404);
      return { id: `/subscriptions/${this.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${guid}`, roleName: name };
    },
    ensure: async (name, requestedScope, roleDefinitionId, principalId) => {
      await this.enter('roleAssignments.create');
      const scope = resolvedLikeTheSdk(requestedScope);
      if (this.principalNotFoundTimes > 0) {
        this.principalNotFoundTimes--;
        throw new PrincipalNotFoundError('principal not found', 'roleAssignments.create', 400, 'PrincipalNotFound');
      }
      const id = `${scope}/providers/Microsoft.Authorization/roleAssignments/${name}`;
      const ra: RoleAssignment = { id, name, scope, roleDefinitionId, principalId };
      const dup = [...this.assignments.values()].find(
        (a) => a.principalId === principalId && roleDefinitionGuid(a.roleDefinitionId) === roleDefinitionGuid(roleDefinitionId) && normalizeId(a.scope) === normalizeId(scope),
      );
      if (!dup) this.assignments.set(normalizeId(id), ra);
      return dup ?? ra;
    },
    delete: async (scope, name) => {
      await this.enter('roleAssignments.delete');
      this.assignments.delete(normalizeId(`${scope}/providers/Microsoft.Authorization/roleAssignments/${name}`));
    },
    listForPrincipal: async (principalId: string, subscriptionId: string = this.subscriptionId) => {
      await this.enter('roleAssignments.list');
      // Like ARM: one subscription per list.
      const under = `/subscriptions/${subscriptionId.toLowerCase()}`;
      return [...this.assignments.values()].filter((a) => a.principalId === principalId && normalizeId(a.scope).startsWith(under)).map((a) => ({ ...a }));
    },
    listForPrincipalAtManagementGroup: async (principalId: string, managementGroupScope: string) => {
      await this.enter('roleAssignments.list');
      return [...this.assignments.values()].filter((a) => a.principalId === principalId && normalizeId(a.scope) === normalizeId(managementGroupScope)).map((a) => ({ ...a }));
    },
  };

  readonly scaleSets: ScaleSetClient = {
    get: async (id) => {
      await this.enter('scaleSets.get');
      const s = this.scaleSetState.get(normalizeId(id));
      if (!s) throw new NotFoundError(`scale set ${id} not found`, 'scaleSets.get', 404);
      return { ...s, userAssigned: [...s.userAssigned] };
    },
    patch: async (id, add, remove, onAccepted) => {
      await this.enter('scaleSets.update');
      onAccepted?.();
      const s = this.scaleSetState.get(normalizeId(id));
      if (!s) throw new NotFoundError(`scale set ${id} not found`, 'scaleSets.update', 404);
      const removing = new Set(remove.map(normalizeId));
      const next = s.userAssigned.filter((u) => !removing.has(normalizeId(u)));
      for (const a of add) if (!next.some((u) => normalizeId(u) === normalizeId(a))) next.push(a);
      if (next.length > 100) throw new LimitExceededError('more than 100 identities', 'scaleSets.update', 400, 'InvalidParameter');
      s.userAssigned = next;
      return { ...s, userAssigned: [...next] };
    },
  };

  readonly cluster: ClusterClient = {
    getOidcIssuer: async () => {
      await this.enter('managedClusters.get');
      return this.oidcIssuer;
    },
    getNetwork: async () => {
      await this.enter('managedClusters.get');
      return { ...this.clusterNetwork };
    },
  };
}
