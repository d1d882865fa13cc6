/** Microsoft.Authorization: built-in role definitions and role assignments at any scope. */
import { armError, type Route, type RequestContext } from '../router.js';
import { BUILT_IN_ROLES, roleByGuid, type BuiltInRole } from '../roles.js';
import { ConditionSyntaxError, parseCondition, RA_ATTR } from '../conditions.js';
import { isAtOrAbove, type AuthzAttributes, type RoleAssignment } from '../state.js';
import { asRecord, authorize, callerOf, GUID, page, type ArmDeps } from './common.js';

const RA_TYPE = 'Microsoft.Authorization/roleAssignments';
const RD_TYPE = 'Microsoft.Authorization/roleDefinitions';
const PRINCIPAL_TYPES = ['User', 'Group', 'ServicePrincipal', 'ForeignGroup', 'Device'];

/** The scope captured before `/providers/Microsoft.Authorization/...`, without a trailing slash. */
function scopeOf(ctx: RequestContext): string {
  return (ctx.params[0] ?? '').replace(/\/+$/, '');
}

function definitionIdPrefix(scope: string): string {
  const m = /^\/subscriptions\/([^/]+)/i.exec(scope);
  return m ? `/subscriptions/${m[1]}` : '';
}

export function roleDefinitionJson(role: BuiltInRole, scope: string): Record<string, unknown> {
  return {
    id: `${definitionIdPrefix(scope)}/providers/${RD_TYPE}/${role.guid}`,
    name: role.guid,
    type: RD_TYPE,
    properties: {
      roleName: role.roleName,
      type: 'BuiltInRole',
      description: role.description,
      assignableScopes: ['/'],
      permissions: [{ actions: role.actions, notActions: role.notActions, dataActions: role.dataActions ?? [], notDataActions: [] }],
      createdOn: '2015-02-02T21:55:09.8806423Z',
      updatedOn: '2024-01-01T00:00:00.0000000Z',
      createdBy: null,
      updatedBy: null,
    },
  };
}

export function roleAssignmentJson(ra: RoleAssignment): Record<string, unknown> {
  return {
    id: ra.id,
    name: ra.name,
    type: RA_TYPE,
    properties: {
      roleDefinitionId: ra.roleDefinitionId,
      principalId: ra.principalId,
      principalType: ra.principalType,
      scope: ra.scope,
      condition: ra.condition ?? null,
      conditionVersion: ra.condition ? (ra.conditionVersion ?? '2.0') : null,
      createdOn: ra.createdOn,
      updatedOn: ra.createdOn,
      createdBy: ra.createdBy,
      updatedBy: ra.createdBy,
      delegatedManagedIdentityResourceId: null,
      description: null,
    },
  };
}

/** Parses `$filter` for role assignment lists: `principalId eq '…'`, `assignedTo('…')`, `atScope()`, joined by `and`. */
function parseAssignmentFilter(filter: string | null): { principalId?: string; atScope: boolean } {
  if (!filter) return { atScope: false };
  const out: { principalId?: string; atScope: boolean } = { atScope: false };
  for (const clause of filter.split(/\s+and\s+/i)) {
    const c = clause.trim();
    let m: RegExpExecArray | null;
    if (/^atScope\(\)$/i.test(c)) out.atScope = true;
    else if ((m = /^principalId\s+eq\s+'([^']*)'$/i.exec(c))) out.principalId = (m[1] ?? '').toLowerCase();
    else if ((m = /^assignedTo\('([^']*)'\)$/i.exec(c))) out.principalId = (m[1] ?? '').toLowerCase();
    else throw armError(400, 'InvalidFilterInQueryString', `The filter '${filter}' is not supported.`);
  }
  return out;
}

export function createRoleAssignment(
  deps: ArmDeps,
  input: { scope: string; name: string; roleDefinitionId: string; principalId: string; principalType?: string; createdBy: string; condition?: string; conditionVersion?: string },
): { status: number; assignment: RoleAssignment } {
  const { state } = deps;
  const { scope, name } = input;
  if (!GUID.test(name)) {
    throw armError(400, 'InvalidRoleAssignmentId', `The role assignment ID '${name}' is not valid. The role assignment ID must be a GUID.`);
  }
  const scopeProblem = state.scopeProblem(scope);
  if (scopeProblem) throw armError(scopeProblem.code === 'InvalidScope' ? 400 : 404, scopeProblem.code, scopeProblem.message);
  const rdMatch = /\/providers\/Microsoft\.Authorization\/roleDefinitions\/([^/]+)$/i.exec(input.roleDefinitionId);
  const role = rdMatch ? roleByGuid(rdMatch[1] ?? '') : undefined;
  if (!role) throw armError(400, 'RoleDefinitionDoesNotExist', `The specified role definition with ID '${input.roleDefinitionId}' does not exist.`);
  const principalId = input.principalId.toLowerCase();
  const principal = GUID.test(principalId) ? state.principal(principalId) : undefined;
  if (!principal || Date.now() - principal.createdAt < deps.settings.principalReplicationDelayMs) {
    throw armError(
      400,
      'PrincipalNotFound',
      `Principal ${principalId.replace(/-/g, '')} does not exist in the directory ${state.tenantId}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype`,
    );
  }
  if (input.condition !== undefined) {
    if (input.conditionVersion !== undefined && input.conditionVersion !== '2.0') {
      throw armError(400, 'InvalidConditionVersion', `The condition version '${input.conditionVersion}' is not supported. Supported version is '2.0'.`);
    }
    try {
      parseCondition(input.condition);
    } catch (err) {
      if (!(err instanceof ConditionSyntaxError)) throw err;
      throw armError(400, 'InvalidRoleAssignmentCondition', `The given role assignment condition is invalid: ${err.message}`);
    }
  }
  const principalType = input.principalType ?? 'ServicePrincipal';
  if (!PRINCIPAL_TYPES.includes(principalType)) {
    throw armError(400, 'InvalidPrincipalType', `The principal type '${principalType}' is not valid.`);
  }
  if (principalType !== 'ServicePrincipal') {
    throw armError(400, 'UnmatchedPrincipalType', `The PrincipalId '${principalId.replace(/-/g, '')}' has type 'ServicePrincipal' , which is different from specified PrincipalType '${principalType}'.`);
  }
  const id = `${scope}/providers/${RA_TYPE}/${name.toLowerCase()}`;
  const roleDefinitionId = `/subscriptions/${state.subscriptionId}/providers/${RD_TYPE}/${role.guid}`;
  const existing = state.roleAssignmentsById.get(id.toLowerCase());
  if (existing) {
    if (existing.principalId !== principalId || existing.roleGuid !== role.guid) {
      throw armError(400, 'RoleAssignmentUpdateNotPermitted', 'Tenant ID, application ID, principal ID, and scope are not allowed to be updated.');
    }
    throw armError(409, 'RoleAssignmentExists', 'The role assignment already exists.');
  }
  for (const ra of state.roleAssignmentsById.values()) {
    if (ra.principalId === principalId && ra.roleGuid === role.guid && ra.scope.toLowerCase() === scope.toLowerCase()) {
      throw armError(409, 'RoleAssignmentExists', `The role assignment already exists. The ID of the existing role assignment is ${ra.name.replace(/-/g, '')}.`);
    }
  }
  const assignment: RoleAssignment = {
    id,
    name: name.toLowerCase(),
    scope,
    roleDefinitionId,
    roleGuid: role.guid,
    principalId,
    principalType,
    createdOn: new Date().toISOString(),
    createdBy: input.createdBy,
    ...(input.condition !== undefined ? { condition: input.condition, conditionVersion: input.conditionVersion ?? '2.0' } : {}),
  };
  state.roleAssignmentsById.set(id.toLowerCase(), assignment);
  return { status: 201, assignment };
}

export function authorizationRoutes(deps: ArmDeps): Route[] {
  const { state } = deps;
  const RD = String.raw`/providers/Microsoft\.Authorization/roleDefinitions`;
  const RA = String.raw`/providers/Microsoft\.Authorization/roleAssignments`;
  return [
    {
      name: 'roleDefinitions.list',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RD}$`, 'i'),
      handle(ctx) {
        callerOf(ctx); // any authenticated caller may read built-in role definitions
        const scope = scopeOf(ctx);
        const filter = ctx.query.get('$filter');
        let roles = BUILT_IN_ROLES;
        if (filter) {
          const byName = /^roleName\s+eq\s+'([^']*)'$/i.exec(filter.trim());
          const byType = /^type\s+eq\s+'([^']*)'$/i.exec(filter.trim());
          if (byName) roles = roles.filter((r) => r.roleName.toLowerCase() === (byName[1] ?? '').toLowerCase());
          else if (byType) roles = (byType[1] ?? '').toLowerCase() === 'builtinrole' ? roles : [];
          else throw armError(400, 'InvalidFilterInQueryString', `The filter '${filter}' is not supported.`);
        }
        return page(deps, ctx, roles.map((r) => roleDefinitionJson(r, scope)));
      },
    },
    {
      name: 'roleDefinitions.get',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RD}/([^/]+)$`, 'i'),
      handle(ctx) {
        callerOf(ctx);
        const role = roleByGuid(ctx.params[1] ?? '');
        if (!role) throw armError(404, 'RoleDefinitionDoesNotExist', `The role definition '${ctx.params[1]}' could not be found.`);
        return { status: 200, body: roleDefinitionJson(role, scopeOf(ctx)) };
      },
    },
    {
      name: 'roleAssignments.list',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RA}$`, 'i'),
      handle(ctx) {
        const scope = scopeOf(ctx);
        authorize(deps, ctx, `${RA_TYPE}/read`, scope);
        const problem = state.scopeProblem(scope);
        if (problem) throw armError(problem.code === 'InvalidScope' ? 400 : 404, problem.code, problem.message);
        const filter = parseAssignmentFilter(ctx.query.get('$filter'));
        const items = [...state.roleAssignmentsById.values()].filter(
          (ra) =>
            (isAtOrAbove(ra.scope, scope) || (!filter.atScope && isAtOrAbove(scope, ra.scope))) &&
            (filter.principalId === undefined || ra.principalId === filter.principalId),
        );
        return page(deps, ctx, items.map(roleAssignmentJson));
      },
    },
    {
      name: 'roleAssignments.get',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RA}/([^/]+)$`, 'i'),
      handle(ctx) {
        const scope = scopeOf(ctx);
        authorize(deps, ctx, `${RA_TYPE}/read`, scope);
        const ra = state.roleAssignmentsById.get(`${scope}/providers/${RA_TYPE}/${ctx.params[1]}`.toLowerCase());
        if (!ra) throw armError(404, 'RoleAssignmentNotFound', `The role assignment '${ctx.params[1]}' is not found.`);
        return { status: 200, body: roleAssignmentJson(ra) };
      },
    },
    {
      name: 'roleAssignments.put',
      method: 'PUT',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RA}/([^/]+)$`, 'i'),
      handle(ctx) {
        const scope = scopeOf(ctx);
        callerOf(ctx);
        const props = asRecord(asRecord(ctx.json())['properties'] ?? null);
        const { roleDefinitionId, principalId, principalType, condition, conditionVersion } = props;
        if (typeof roleDefinitionId !== 'string' || typeof principalId !== 'string') {
          throw armError(400, 'InvalidRequestContent', "The properties 'roleDefinitionId' and 'principalId' are required.");
        }
        if (principalType !== undefined && principalType !== null && typeof principalType !== 'string') {
          throw armError(400, 'InvalidRequestContent', "The property 'principalType' must be a string.");
        }
        if ((condition !== undefined && condition !== null && typeof condition !== 'string') || (conditionVersion !== undefined && conditionVersion !== null && typeof conditionVersion !== 'string')) {
          throw armError(400, 'InvalidRequestContent', "The properties 'condition' and 'conditionVersion' must be strings.");
        }
        // ABAC: a conditioned "Role Based Access Control Administrator" may write only the assignments its
        // condition allows (by role definition, principal and principal type of the new assignment).
        const request: AuthzAttributes['request'] = {
          [RA_ATTR.roleDefinitionId]: [roleDefinitionId.split('/').pop() ?? ''],
          [RA_ATTR.principalId]: [principalId],
          ...(typeof principalType === 'string' ? { [RA_ATTR.principalType]: [principalType] } : {}),
        };
        authorize(deps, ctx, `${RA_TYPE}/write`, scope, { request }, `${scope}/providers/${RA_TYPE}/${ctx.params[1] ?? ''}`);
        const { status, assignment } = createRoleAssignment(deps, {
          scope,
          name: ctx.params[1] ?? '',
          roleDefinitionId,
          principalId,
          ...(typeof principalType === 'string' ? { principalType } : {}),
          ...(typeof condition === 'string' ? { condition } : {}),
          ...(typeof conditionVersion === 'string' ? { conditionVersion } : {}),
          createdBy: callerOf(ctx),
        });
        return { status, body: roleAssignmentJson(assignment) };
      },
    },
    {
      name: 'roleAssignments.delete',
      method: 'DELETE',
      family: 'arm',
      pattern: new RegExp(`^(.*)${RA}/([^/]+)$`, 'i'),
      handle(ctx) {
        const scope = scopeOf(ctx);
        const id = `${scope}/providers/${RA_TYPE}/${ctx.params[1]}`;
        const ra = state.roleAssignmentsById.get(id.toLowerCase());
        if (!ra) {
          // Nothing to delete: only a caller with no delete right at all is refused.
          if (state.authorize(callerOf(ctx), `${RA_TYPE}/delete`, scope) === 'denied') authorize(deps, ctx, `${RA_TYPE}/delete`, scope);
          return { status: 204 };
        }
        // ABAC: the condition sees the existing assignment's attributes.
        const resource: AuthzAttributes['resource'] = { [RA_ATTR.roleDefinitionId]: [ra.roleGuid], [RA_ATTR.principalId]: [ra.principalId], [RA_ATTR.principalType]: [ra.principalType] };
        authorize(deps, ctx, `${RA_TYPE}/delete`, scope, { resource }, ra.id);
        const key = id.toLowerCase();
        state.roleAssignmentsById.delete(key);
        return { status: 200, body: roleAssignmentJson(ra) };
      },
    },
  ];
}
