import type { AuthorizationManagementClient } from '@azure/arm-authorization';
import { ConflictError, NotFoundError } from '../errors.js';
import { parseRole, parseScope } from '../arm-id.js';
import { isGuid, isRoleDefinitionId, roleDefinitionGuid } from '../ids.js';
import type { AzureCall } from '../instrument.js';
import type { RoleAssignment, RoleClient, RoleDefinition } from '../types.js';

/**
 * arm-authorization does not encode the scope: a leading '/' becomes '//subscriptions/…' (reference §3), and
 * URL handling would resolve dot segments in it. So only a canonical scope is ever sent (a caller's bug must not
 * turn `…/team-a/providers/../../..` into the subscription), without its leading '/'.
 */
function sdkScope(scope: string): string {
  const p = parseScope(scope);
  if (!p.ok) throw new Error(`refusing to send a non-canonical role assignment scope to Azure: ${JSON.stringify(scope)} ${p.problem}`);
  return scope.slice(1);
}

export class ArmRoleClient implements RoleClient {
  /** Role names and ids → definitions. Built-in definitions never change; custom ones rarely. */
  private readonly definitions = new Map<string, { def: RoleDefinition; at: number }>();

  constructor(
    private readonly client: AuthorizationManagementClient,
    /** Lists are per subscription: a client bound to the one asked for. */
    private readonly clientFor: (subscriptionId: string) => AuthorizationManagementClient,
    private readonly subscriptionId: string,
    private readonly call: AzureCall,
    private readonly cacheTtlMs = 60 * 60_000,
  ) {}

  async resolveRole(role: string, scope: string): Promise<RoleDefinition> {
    const atScope = sdkScope(scope);
    const parsed = parseRole(role);
    if (!parsed.ok) throw new NotFoundError(`role ${JSON.stringify(role)} ${parsed.problem}`, 'roleDefinitions.get');
    const cacheKey = isRoleDefinitionId(role) ? roleDefinitionGuid(role) : `name:${role.toLowerCase()}`;
    const cached = this.definitions.get(cacheKey);
    if (cached && Date.now() - cached.at < this.cacheTtlMs) return cached.def;
    let def: RoleDefinition;
    if (isRoleDefinitionId(role)) {
      const guid = roleDefinitionGuid(role);
      if (!isGuid(guid)) throw new NotFoundError(`role definition "${role}" is not a valid id`, 'roleDefinitions.get');
      const found = await this.call('roleDefinitions.get', () => this.client.roleDefinitions.get(atScope, guid));
      def = { id: found.id ?? this.definitionId(guid), roleName: found.roleName ?? role };
    } else {
      const escaped = role.replace(/'/g, "''");
      const found = await this.call('roleDefinitions.list', async () => {
        const out = [];
        for await (const d of this.client.roleDefinitions.list(atScope, { filter: `roleName eq '${escaped}'` })) out.push(d);
        return out;
      });
      const match = found.find((d) => d.roleName?.toLowerCase() === role.toLowerCase());
      if (!match?.id) throw new NotFoundError(`role "${role}" does not exist`, 'roleDefinitions.list', 404, 'RoleDefinitionDoesNotExist');
      def = { id: match.id, roleName: match.roleName ?? role };
    }
    const entry = { def, at: Date.now() };
    this.definitions.set(cacheKey, entry);
    this.definitions.set(roleDefinitionGuid(def.id), entry);
    return def;
  }

  async ensure(name: string, scope: string, roleDefinitionId: string, principalId: string): Promise<RoleAssignment> {
    const atScope = sdkScope(scope);
    const fallback: RoleAssignment = {
      id: `${scope.replace(/\/+$/, '')}/providers/Microsoft.Authorization/roleAssignments/${name}`,
      name,
      scope,
      roleDefinitionId,
      principalId,
    };
    try {
      const ra = await this.call('roleAssignments.create', () =>
        this.client.roleAssignments.create(atScope, name, { roleDefinitionId, principalId, principalType: 'ServicePrincipal' }),
      );
      return { id: ra.id ?? fallback.id, name: ra.name ?? name, scope: ra.scope ?? scope, roleDefinitionId: ra.roleDefinitionId ?? roleDefinitionId, principalId };
    } catch (err) {
      // The same principal+role+scope already exists (our deterministic name, or a re-PUT): done.
      if (err instanceof ConflictError && (err.code === 'RoleAssignmentExists' || err.code === undefined)) return fallback;
      throw err;
    }
  }

  async delete(scope: string, name: string): Promise<void> {
    const atScope = sdkScope(scope);
    try {
      await this.call('roleAssignments.delete', () => this.client.roleAssignments.delete(atScope, name));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  async listForPrincipal(principalId: string, subscriptionId: string): Promise<RoleAssignment[]> {
    // The SDK leaves "." and ".." unescaped in the path: "/subscriptions/.." would list at the tenant root.
    if (!isGuid(subscriptionId)) throw new Error(`refusing to list role assignments in subscription ${JSON.stringify(subscriptionId)}: not a GUID`);
    if (!isGuid(principalId)) throw new Error(`refusing to list role assignments of principal ${JSON.stringify(principalId)}: not a GUID`);
    return this.call('roleAssignments.list', async () => {
      const out: RoleAssignment[] = [];
      const filter = `principalId eq '${principalId}'`;
      for await (const ra of this.clientFor(subscriptionId).roleAssignments.listForSubscription({ filter })) {
        if (ra.principalId && ra.principalId.toLowerCase() !== principalId.toLowerCase()) continue;
        out.push({ id: ra.id ?? '', name: ra.name ?? '', scope: ra.scope ?? '', roleDefinitionId: ra.roleDefinitionId ?? '', principalId });
      }
      return out;
    });
  }

  async listForPrincipalAtManagementGroup(principalId: string, managementGroupScope: string): Promise<RoleAssignment[]> {
    const p = parseScope(managementGroupScope);
    if (!p.ok || p.value.kind !== 'managementGroup') throw new Error(`refusing to list role assignments at ${JSON.stringify(managementGroupScope)}: not a canonical management group id`);
    if (!isGuid(principalId)) throw new Error(`refusing to list role assignments of principal ${JSON.stringify(principalId)}: not a GUID`);
    return this.call('roleAssignments.list', async () => {
      const out: RoleAssignment[] = [];
      // Management groups filter by assignedTo() (principalId eq is for subscriptions and below).
      for await (const ra of this.client.roleAssignments.listForScope(sdkScope(managementGroupScope), { filter: `assignedTo('${principalId}')` })) {
        if (ra.principalId?.toLowerCase() !== principalId.toLowerCase()) continue;
        out.push({ id: ra.id ?? '', name: ra.name ?? '', scope: ra.scope ?? '', roleDefinitionId: ra.roleDefinitionId ?? '', principalId });
      }
      return out;
    });
  }

  private definitionId(guid: string): string {
    return `/subscriptions/${this.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${guid}`;
  }
}
