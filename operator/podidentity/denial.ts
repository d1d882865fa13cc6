/**
 * What a policy violation does: no Azure writes except taking away what policy no longer allows, then a
 * PolicyDenied (or InvalidSpec) status. An unknown namespace is a gap in what the operator knows, not a verdict: nothing is
 * granted and nothing revoked until its labels are known.
 */
import { CONDITION_IDENTITY_READY, CONDITION_READY, CONDITION_ROLES_ASSIGNED, type Mode, type PodIdentity } from '../../lib/api/types.js';
import { parseRole } from '../azure/arm-id.js';
import { roleAssignmentName } from '../azure/ids.js';
import { violations, type PolicyDecision } from '../policy/evaluate.js';
import { releaseCredentials } from './credentials.js';
import type { StepDeps } from './deps.js';
import { releaseRoles } from './roles.js';
import { withdrawScaleSets } from './scalesets.js';
import { bad, conditionOf, modeCondition, type Cond, type StatusWriter } from './status.js';

export async function applyDenial(d: StepDeps, status: StatusWriter, pid: PodIdentity, mode: Mode, decision: PolicyDecision): Promise<void> {
  const message = violations(decision).join('; ');
  if (!decision.namespaceUnknown) await revoke(d, pid, decision);
  const policyCond = bad(decision.reason, message);
  const identityDenied = !!(decision.identity || decision.mode || decision.namespaceUnknown);
  const conds = new Map<string, Cond>();
  conds.set(CONDITION_IDENTITY_READY, (!identityDenied && conditionOf(pid, CONDITION_IDENTITY_READY)) || policyCond);
  conds.set(CONDITION_ROLES_ASSIGNED, policyCond);
  conds.set(modeCondition(mode), policyCond);
  const roleAssignments = (pid.spec.roleAssignments ?? []).map((ra, i) => {
    const denied = decision.roles.get(i);
    if (denied) return { role: ra.role, scope: ra.scope, state: 'Denied' as const, message: denied };
    const previous = pid.status?.roleAssignments?.find((s) => s.role === ra.role && s.scope === ra.scope) ?? { role: ra.role, scope: ra.scope };
    return { ...previous, state: 'Pending' as const, message: 'not applied while the PodIdentity violates policy' };
  });
  const ready = conditionOf(pid, CONDITION_READY);
  if (ready?.reason !== decision.reason || ready.message !== message) {
    d.logger?.warn(decision.reason === 'InvalidSpec' ? 'PodIdentity has invalid ARM ids' : 'PodIdentity denied by policy', { namespace: pid.metadata.namespace, name: pid.metadata.name, violations: violations(decision), policies: decision.policies });
    d.writer.event(pid, 'Warning', decision.reason, message);
  }
  await status.write(pid, { ...(pid.status ?? {}), mode, roleAssignments }, conds, mode, policyCond);
}

/** Takes away, from what this PodIdentity recorded, everything the decision no longer allows. */
async function revoke(d: StepDeps, pid: PodIdentity, decision: PolicyDecision): Promise<void> {
  const identityId = pid.status?.resourceId;
  const principalId = pid.status?.principalId;
  if (!identityId) return;
  const identityDenied = !!(decision.identity || decision.mode);
  if (identityDenied) {
    // Its federated credentials would still let the service accounts exchange tokens, and scale sets would
    // still carry it: both go.
    await releaseCredentials(d, pid, identityId);
    await withdrawScaleSets(d, pid, identityId, { ownershipRecord: false });
  }
  if (!principalId) return;
  const keep = new Set<string>();
  if (!identityDenied) {
    for (const [i, ra] of (pid.spec.roleAssignments ?? []).entries()) {
      if (decision.roles.has(i)) continue;
      const recorded = pid.status?.roleAssignments?.find((s) => s.role === ra.role && s.scope === ra.scope && s.roleDefinitionId);
      // The definition: as recorded, or as written when the role is a roleDefinitionId (no read needed). An
      // allowed entry with neither has no assignment of ours to keep; it must not stop the revocation of the
      // denied ones (a role that never resolves, or an entry added with the tightening, would otherwise keep
      // every revoked grant alive).
      const role = parseRole(ra.role);
      const definition = recorded?.roleDefinitionId ?? (role.ok ? role.value.guid : undefined);
      if (definition) keep.add(roleAssignmentName(principalId, definition, ra.scope));
    }
  }
  await releaseRoles(d, pid, { identityId, principalId, owned: false, keep, reason: 'policy' });
}
