/** Microsoft.Compute: scale-set GET and PATCH of `identity` (a long-running operation), and its operation status. */
import { randomUUID } from 'node:crypto';
import { armError, type Route } from '../router.js';
import type { ScaleSet, UserAssignedRef } from '../state.js';
import { asRecord, authorize, callerOf, notFound, requireResourceGroup, type ArmDeps } from './common.js';

const TYPE = 'Microsoft.Compute/virtualMachineScaleSets';
export const MAX_USER_ASSIGNED_IDENTITIES = 100;

export function identityType(ss: ScaleSet): string {
  const parts = [...(ss.systemAssigned ? ['SystemAssigned'] : []), ...(ss.userAssigned.size > 0 ? ['UserAssigned'] : [])];
  return parts.length ? parts.join(', ') : 'None';
}

export function computeRoutes(deps: ArmDeps): Route[] {
  const { state } = deps;
  /** Scale-set id (lower-case) → when its current update finishes. */
  const updatingUntil = new Map<string, number>();

  const scaleSetJson = (ss: ScaleSet): Record<string, unknown> => {
    const busy = (updatingUntil.get(ss.id.toLowerCase()) ?? 0) > Date.now();
    const type = identityType(ss);
    const identity =
      type === 'None'
        ? undefined
        : {
            type,
            ...(ss.systemAssigned ? { principalId: ss.systemAssigned.principalId, tenantId: state.tenantId } : {}),
            ...(ss.userAssigned.size > 0
              ? { userAssignedIdentities: Object.fromEntries([...ss.userAssigned.values()].map((u) => [u.id, { principalId: u.principalId, clientId: u.clientId }])) }
              : {}),
          };
    return {
      id: ss.id,
      name: ss.name,
      type: TYPE,
      location: ss.location,
      sku: { name: 'Standard_D2s_v3', tier: 'Standard', capacity: ss.instances.length },
      ...(identity ? { identity } : {}),
      properties: {
        provisioningState: busy ? 'Updating' : 'Succeeded',
        uniqueId: ss.uniqueId,
        orchestrationMode: 'Uniform',
        upgradePolicy: { mode: 'Manual' },
        overprovision: false,
        singlePlacementGroup: true,
        platformFaultDomainCount: 1,
      },
    };
  };

  const lookup = (sub: string, rg: string, name: string): ScaleSet => {
    requireResourceGroup(deps, sub, rg);
    const ss = state.scaleSet(state.scaleSetId(rg, name));
    if (!ss) notFound(TYPE, name, rg);
    return ss;
  };

  return [
    {
      name: 'vmss.get',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)$/i,
      handle(ctx) {
        const [sub = '', rg = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${TYPE}/read`, state.scaleSetId(rg, name));
        return { status: 200, body: scaleSetJson(lookup(sub, rg, name)) };
      },
    },
    {
      name: 'vmss.patch',
      method: 'PATCH',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)$/i,
      handle(ctx) {
        const [sub = '', rg = '', name = ''] = ctx.params;
        const scope = state.scaleSetId(rg, name);
        authorize(deps, ctx, `${TYPE}/write`, scope);
        const ss = lookup(sub, rg, name);
        const body = asRecord(ctx.json());
        if (body['identity'] !== undefined && body['identity'] !== null) applyIdentityPatch(deps, ss, asRecord(body['identity']), callerOf(ctx), ctx.caller?.clientId ?? '');
        const opId = randomUUID();
        const now = Date.now();
        state.operations.set(opId, { id: opId, startedAt: now, completesAt: now + deps.settings.lroDurationMs });
        updatingUntil.set(ss.id.toLowerCase(), now + deps.settings.lroDurationMs);
        const apiVersion = ctx.query.get('api-version') ?? '';
        const location = ss.location.replace(/\s+/g, '').toLowerCase();
        return {
          status: 200,
          body: { ...scaleSetJson(ss), properties: { ...(scaleSetJson(ss)['properties'] as object), provisioningState: 'Updating' } },
          headers: {
            'Azure-AsyncOperation': `${ctx.baseUrl}/subscriptions/${state.subscriptionId}/providers/Microsoft.Compute/locations/${location}/operations/${opId}?p=${encodeURIComponent(ss.uniqueId)}&api-version=${encodeURIComponent(apiVersion)}`,
          },
        };
      },
    },
    {
      name: 'compute.operations.get',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/providers\/Microsoft\.Compute\/locations\/([^/]+)\/operations\/([^/]+)$/i,
      handle(ctx) {
        callerOf(ctx);
        const op = state.operations.get(ctx.params[2] ?? '');
        if (!op) throw armError(404, 'OperationNotFound', `The operation '${ctx.params[2]}' could not be found.`);
        const done = Date.now() >= op.completesAt;
        return {
          status: 200,
          body: {
            name: op.id,
            status: done ? 'Succeeded' : 'InProgress',
            startTime: new Date(op.startedAt).toISOString(),
            ...(done ? { endTime: new Date(op.completesAt).toISOString() } : {}),
          },
          ...(done ? {} : { headers: { 'Retry-After': String(Math.max(1, Math.ceil((op.completesAt - Date.now()) / 1000))) } }),
        };
      },
    },
  ];
}

function applyIdentityPatch(deps: ArmDeps, ss: ScaleSet, identity: Record<string, unknown>, callerPrincipalId: string, callerClientId: string): void {
  const { state } = deps;
  const rawType = identity['type'];
  let wantSystem = Boolean(ss.systemAssigned);
  let wantUser = true;
  if (rawType !== undefined && rawType !== null) {
    if (typeof rawType !== 'string') throw armError(400, 'InvalidParameter', "The value of parameter 'identity.type' is invalid.");
    const parts = rawType.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
    if (parts.length === 0 || parts.some((p) => !['systemassigned', 'userassigned', 'none'].includes(p)) || (parts.includes('none') && parts.length > 1)) {
      throw armError(400, 'InvalidParameter', `The value '${rawType}' of parameter 'identity.type' is invalid. Allowed values: 'SystemAssigned', 'UserAssigned', 'SystemAssigned, UserAssigned', 'None'.`);
    }
    // The type in the PATCH is authoritative, as on Azure: sending "UserAssigned" drops a system-assigned identity.
    wantSystem = parts.includes('systemassigned');
    wantUser = parts.includes('userassigned');
  }
  const changes = identity['userAssignedIdentities'];
  if (changes !== undefined && changes !== null && !wantUser) {
    throw armError(400, 'InvalidParameter', `The identity type '${String(rawType)}' does not contain 'UserAssigned', so 'identity.userAssignedIdentities' must not be set.`);
  }
  const next = new Map<string, UserAssignedRef>(wantUser ? ss.userAssigned : []);
  const added: string[] = [];
  if (changes !== undefined && changes !== null) {
    for (const [id, value] of Object.entries(asRecord(changes))) {
      const key = id.toLowerCase();
      if (value === null) {
        next.delete(key);
        continue;
      }
      if (typeof value !== 'object' || Array.isArray(value)) {
        throw armError(400, 'InvalidParameter', `The value of 'identity.userAssignedIdentities['${id}']' must be {} or null.`);
      }
      const target = state.identity(id);
      if (!target) {
        throw armError(400, 'FailedIdentityOperation', `Identity (${id}) could not be found. The identity does not exist or it is not accessible.`);
      }
      if (!next.has(key)) added.push(id);
      next.set(key, { id, clientId: target.clientId, principalId: target.principalId });
    }
  }
  if (next.size > MAX_USER_ASSIGNED_IDENTITIES) {
    throw armError(400, 'InvalidParameter', `The number of user assigned identities (${next.size}) on ${ss.name} exceeds the maximum of ${MAX_USER_ASSIGNED_IDENTITIES}.`);
  }
  const denied = added.filter((id) => !state.can(callerPrincipalId, 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action', id));
  if (denied.length > 0) {
    throw armError(
      403,
      'LinkedAuthorizationFailed',
      `The client '${callerClientId}' with object id '${callerPrincipalId}' has permission to perform action '${TYPE}/write' on scope '${ss.id}'; however, it does not have permission to perform action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '${denied.join(',')}' (respectively) or the linked scope(s) are invalid.`,
    );
  }
  ss.userAssigned = next;
  if (wantSystem && !ss.systemAssigned) ss.systemAssigned = { principalId: randomUUID(), clientId: randomUUID(), createdAt: Date.now() };
  if (!wantSystem) delete ss.systemAssigned;
}
