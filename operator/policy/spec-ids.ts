import type { PodIdentityPolicy, PodIdentitySpec } from '../../lib/api/types.js';
import { isResourceGroupName, parseIdentityResourceId, parsePathPattern, parseRole, parseScope } from '../azure/arm-id.js';

/** A spec field that is not a canonical ARM id (or name), named as in the spec. */
export interface InvalidField {
  /** `roleAssignments[0].scope`, `identity.existing.resourceId`, … */
  field: string;
  message: string;
  /** For roleAssignments entries: the index. */
  roleIndex?: number;
}

const MANAGED_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$/;
const show = (v: unknown): string => JSON.stringify(v);

/**
 * Every ARM id (and name that becomes a path segment) in a PodIdentity spec, checked for canonical form.
 * The CRD schema rejects most of these already; this runs anyway, because an old CRD or a direct etcd write
 * bypasses the schema.
 */
export function invalidSpecIds(spec: PodIdentitySpec): InvalidField[] {
  const out: InvalidField[] = [];
  const existing = spec.identity?.existing;
  if (existing) {
    const p = parseIdentityResourceId(existing.resourceId);
    if (!p.ok) out.push({ field: 'identity.existing.resourceId', message: `${show(existing.resourceId)} ${p.problem}` });
  }
  const managed = spec.identity?.managed;
  if (managed?.resourceGroup !== undefined && !isResourceGroupName(managed.resourceGroup)) {
    out.push({ field: 'identity.managed.resourceGroup', message: `${show(managed.resourceGroup)} is not a resource group name (letters, digits, "-", "_", ".", "(", ")"; at most 90; not ending in ".")` });
  }
  if (managed?.name !== undefined && !MANAGED_NAME.test(managed.name)) {
    out.push({ field: 'identity.managed.name', message: `${show(managed.name)} is not an identity name (3-128 letters, digits, "-" and "_", starting with a letter or digit)` });
  }
  (spec.roleAssignments ?? []).forEach((ra, i) => {
    const role = parseRole(ra.role);
    if (!role.ok) out.push({ field: `roleAssignments[${i}].role`, message: `${show(ra.role)} ${role.problem}`, roleIndex: i });
    const scope = parseScope(ra.scope);
    if (!scope.ok) out.push({ field: `roleAssignments[${i}].scope`, message: `${show(ra.scope)} is not a canonical ARM scope: it ${scope.problem}`, roleIndex: i });
  });
  return out;
}

/** Entries of a policy that are not canonical, named as in the policy; they allow nothing. */
export function invalidPolicyEntries(policy: PodIdentityPolicy): string[] {
  const out: string[] = [];
  const name = policy.metadata.name ?? '';
  for (const list of ['allowedScopes', 'allowedExistingIdentities'] as const) {
    (policy.spec[list] ?? []).forEach((entry, i) => {
      const p = parsePathPattern(entry);
      if (!p.ok) out.push(`PodIdentityPolicy "${name}" ${list}[${i}] ${show(entry)} ${p.problem}; it allows nothing`);
    });
  }
  (policy.spec.allowedRoles ?? []).forEach((entry, i) => {
    if (entry === '*') return;
    const p = parseRole(entry);
    if (!p.ok) out.push(`PodIdentityPolicy "${name}" allowedRoles[${i}] ${show(entry)} ${p.problem}; it allows nothing`);
  });
  return out;
}
