/**
 * The role-assignment step. Assignments have deterministic names (v5 UUID of principal, role and scope), so a
 * retry PUTs the same one and two PodIdentities sharing an identity share one assignment per role and scope
 * (Azure allows only one). Releasing is reference-counted: a PodIdentity removes only assignments it recorded
 * (or, for an identity whose tags prove it created it, any of the operator's on that principal), and never one
 * another PodIdentity on the same identity records.
 */
import type { PodIdentity, RoleAssignmentStatus } from '../../lib/api/types.js';
import { parseScope } from '../azure/arm-id.js';
import { NotFoundError, PrincipalNotFoundError, ThrottledError } from '../azure/errors.js';
import { parseResourceId, roleAssignmentName } from '../azure/ids.js';
import type { AzureIdentity, RoleAssignment, RoleDefinition } from '../azure/types.js';
import type { StepDeps } from './deps.js';
import { othersClaims, othersWantedRoles } from './desired.js';
import { bad, errMessage, ok, type Cond } from './status.js';

/** Whether an Azure role assignment is one this operator made (its name is the deterministic one). */
function isOperatorAssignment(ra: RoleAssignment): boolean {
  return !!ra.scope && !!ra.roleDefinitionId && ra.name.toLowerCase() === roleAssignmentName(ra.principalId, ra.roleDefinitionId, ra.scope);
}

/** The subscription of a canonical scope; nothing for any other (its "subscription" could be `..`). */
const subscriptionOf = (scope: string): string | undefined => {
  const p = parseScope(scope);
  return p.ok ? p.value.subscriptionId?.toLowerCase() : undefined;
};

/**
 * Everywhere this PodIdentity may have grants: the operator's subscription, the identity's, each scope's, and
 * each management group it named (a subscription's list does not hold those).
 */
function placesOf(d: StepDeps, pid: PodIdentity, identityId: string | undefined): { subscriptions: string[]; managementGroups: string[] } {
  const subs = new Set<string>([d.settings.subscriptionId.toLowerCase()]);
  const groups = new Map<string, string>();
  const idSub = identityId ? parseResourceId(identityId)?.subscriptionId : undefined;
  if (idSub) subs.add(idSub.toLowerCase());
  for (const s of [...(pid.spec.roleAssignments ?? []), ...(pid.status?.roleAssignments ?? [])]) {
    const sub = subscriptionOf(s.scope);
    if (sub) subs.add(sub);
  }
  // Groups only where an assignment may exist (a role definition recorded): listing a group the operator has
  // no rights on would fail, and hold up a release that has nothing there to remove.
  for (const s of pid.status?.roleAssignments ?? []) {
    const p = parseScope(s.scope);
    if (s.roleDefinitionId && p.ok && p.value.kind === 'managementGroup') groups.set(p.value.key, p.value.id);
  }
  return { subscriptions: [...subs].sort(), managementGroups: [...groups.values()].sort() };
}

async function listAll(d: StepDeps, principalId: string, places: { subscriptions: string[]; managementGroups: string[] }): Promise<RoleAssignment[]> {
  const byName = new Map<string, RoleAssignment>();
  const lists = [
    ...places.subscriptions.map((sub) => () => d.azure.roles.listForPrincipal(principalId, sub)),
    ...places.managementGroups.map((mg) => () => d.azure.roles.listForPrincipalAtManagementGroup(principalId, mg)),
  ];
  for (const list of lists) {
    try {
      for (const ra of await list()) byName.set(ra.name.toLowerCase(), ra);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  return [...byName.values()];
}

export interface Release {
  identityId: string;
  principalId: string;
  /** The identity's tags prove this PodIdentity created it: every operator assignment on it is ours. */
  owned: boolean;
  /** The identity's tags, when read: whether another namespace's PodIdentity may use it at all. */
  identityTags?: Record<string, string>;
  /** Assignment names to keep (still desired and allowed). */
  keep?: ReadonlySet<string>;
  /** Why, for the log and the Event. */
  reason: 'spec' | 'policy' | 'deletion';
}

/** "Delete our role assignments": the one place that does. */
export async function releaseRoles(d: StepDeps, pid: PodIdentity, r: Release): Promise<void> {
  const recorded = new Set((pid.status?.roleAssignments ?? []).flatMap((s) => (s.roleDefinitionId ? [roleAssignmentName(r.principalId, s.roleDefinitionId, s.scope)] : [])));
  const others = othersClaims(d.view, pid, r.identityId, r.principalId).roleAssignments;
  for (const name of await othersWantedRoles(d, pid, r.identityId, r.identityTags, r.principalId)) others.add(name);
  for (const ra of await listAll(d, r.principalId, placesOf(d, pid, r.identityId))) {
    const name = ra.name.toLowerCase();
    if (!isOperatorAssignment(ra) || r.keep?.has(name) || others.has(name)) continue;
    if (!r.owned && !recorded.has(name)) continue;
    await d.azure.roles.delete(ra.scope, ra.name);
    const fields = { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: pid.status?.clientId, roleDefinitionId: ra.roleDefinitionId, scope: ra.scope };
    if (r.reason === 'policy') {
      d.logger?.info('role assignment revoked by policy', fields);
      d.writer.event(pid, 'Warning', 'RoleAssignmentRevoked', `policy no longer allows ${ra.roleDefinitionId} at ${ra.scope}; removed`);
    } else {
      d.logger?.info('role assignment removed', fields);
      if (r.reason === 'spec') d.writer.event(pid, 'Normal', 'RoleAssignmentRemoved', `removed ${ra.roleDefinitionId} at ${ra.scope}`);
    }
  }
}

export interface RolesOutcome {
  statuses: RoleAssignmentStatus[];
  condition: Cond;
  pendingPrincipal: boolean;
  error?: unknown;
}

export async function convergeRoles(d: StepDeps, pid: PodIdentity, identity: AzureIdentity, opts: { fresh: boolean; owned: boolean }): Promise<RolesOutcome> {
  const log = d.logger;
  const statuses: RoleAssignmentStatus[] = [];
  const desiredNames = new Set<string>();
  let pendingPrincipal = false;
  let error: unknown;
  for (const ra of pid.spec.roleAssignments ?? []) {
    let def: RoleDefinition;
    try {
      def = await d.azure.roles.resolveRole(ra.role, ra.scope);
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      statuses.push({ role: ra.role, scope: ra.scope, state: 'Failed', message: errMessage(err) });
      if (!(err instanceof NotFoundError)) error ??= err;
      continue;
    }
    const name = roleAssignmentName(identity.principalId, def.id, ra.scope);
    desiredNames.add(name);
    const recorded = pid.status?.roleAssignments?.find((s) => s.role === ra.role && s.scope === ra.scope && s.state === 'Assigned' && s.id?.endsWith(name));
    try {
      // Idempotent PUT under the deterministic name (409 = already there), so drift is repaired on full syncs.
      const created = await d.azure.roles.ensure(name, ra.scope, def.id, identity.principalId);
      statuses.push({ role: ra.role, scope: ra.scope, roleDefinitionId: def.id, id: created.id, state: 'Assigned' });
      if (!recorded) log?.info('role assignment ensured', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: identity.clientId, role: def.roleName, scope: ra.scope });
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      if (err instanceof PrincipalNotFoundError) {
        pendingPrincipal = true;
        statuses.push({ role: ra.role, scope: ra.scope, roleDefinitionId: def.id, state: 'Pending', message: 'waiting for the new identity to replicate in Azure AD' });
      } else {
        statuses.push({ role: ra.role, scope: ra.scope, roleDefinitionId: def.id, state: 'Failed', message: errMessage(err) });
        error ??= err;
      }
    }
  }
  // Remove ours that left the spec. A fresh principal has none but those just made.
  if (!opts.fresh) {
    try {
      await releaseRoles(d, pid, { identityId: identity.id, identityTags: identity.tags, principalId: identity.principalId, owned: opts.owned, keep: desiredNames, reason: 'spec' });
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      error ??= err;
    }
  }
  const failed = statuses.filter((s) => s.state === 'Failed');
  const condition: Cond = failed.length
    ? bad(failed.some((s) => /does not exist/.test(s.message ?? '')) ? 'RoleNotFound' : 'AzureError', failed.map((s) => `${s.role} at ${s.scope}: ${s.message}`).join('; '))
    : pendingPrincipal
      ? bad('PrincipalNotReplicated', 'waiting for the new identity to replicate in Azure AD before assigning roles')
      : ok('RolesAssigned', statuses.length ? `${statuses.length} role assignment(s) in place` : 'no role assignments requested');
  return { statuses, condition, pendingPrincipal, ...(error ? { error } : {}) };
}
