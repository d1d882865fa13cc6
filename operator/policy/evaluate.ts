import { matchesSelector } from '../../lib/api/selector.js';
import type { Mode, PodIdentityPolicy, PodIdentitySpec } from '../../lib/api/types.js';
import { matchesPathPattern } from './patterns.js';

/** What the reconciler knows about a role named in spec (its definition, once resolved). */
export interface RoleInfo {
  name?: string;
  /** roleDefinition GUID, lower-case. */
  guid?: string;
}

export interface PolicyInput {
  namespace: string;
  namespaceLabels: Record<string, string> | undefined;
  policies: readonly PodIdentityPolicy[];
  spec: PodIdentitySpec;
  /** The effective mode (spec.mode or the operator default). */
  mode: Mode;
  /** For a managed identity: the resource group it will live in (spec or default). */
  managedResourceGroup?: string;
  /** For a managed identity: its subscription (the operator's). */
  subscriptionId: string;
  defaultResourceGroup: string;
  /** Resolved role names/ids, keyed by the role string in spec, so names and ids compare either way. */
  roleInfo?: ReadonlyMap<string, RoleInfo>;
}

export interface PolicyDecision {
  allowed: boolean;
  /** One message per offending entry, each naming it. */
  violations: string[];
  /** Indexes into spec.roleAssignments that no policy allows. */
  deniedRoles: number[];
  /** Names of the policies that select the namespace. */
  policies: string[];
}

const GUID_AT_END = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** The definition GUID when `role` is a roleDefinitionId or a bare GUID; undefined for a role name. */
function definitionGuid(role: string): string | undefined {
  const guid = GUID_AT_END.exec(role)?.[1];
  return guid && (guid === role || /\/roleDefinitions\//i.test(role)) ? guid.toLowerCase() : undefined;
}

function roleKeys(role: string, info: RoleInfo | undefined): { names: Set<string>; guids: Set<string> } {
  const names = new Set<string>();
  const guids = new Set<string>();
  const guid = definitionGuid(role);
  if (guid) guids.add(guid);
  else names.add(role.toLowerCase());
  if (info?.name) names.add(info.name.toLowerCase());
  if (info?.guid) guids.add(info.guid.toLowerCase());
  return { names, guids };
}

function allowsRole(policy: PodIdentityPolicy, role: string, info: RoleInfo | undefined): boolean {
  const { names, guids } = roleKeys(role, info);
  return (policy.spec.allowedRoles ?? []).some((allowed) => {
    if (allowed === '*') return true;
    const guid = definitionGuid(allowed);
    if (guid) return guids.has(guid);
    return names.has(allowed.toLowerCase());
  });
}

const allowsScope = (policy: PodIdentityPolicy, scope: string): boolean => (policy.spec.allowedScopes ?? []).some((p) => matchesPathPattern(p, scope));

/**
 * Pure evaluation of the PodIdentityPolicies that select the namespace (their union: an entry is allowed when
 * one policy allows it whole, so policy A's roles never combine with policy B's scopes). Without any matching
 * policy: only a managed identity in the operator's default resource group, and no roles.
 */
export function evaluatePolicy(input: PolicyInput): PolicyDecision {
  const ns = input.namespace;
  const matching = input.policies.filter((p) => matchesSelector(p.spec.namespaceSelector ?? {}, input.namespaceLabels));
  const names = matching.map((p) => p.metadata.name ?? '');
  const violations: string[] = [];
  const deniedRoles: number[] = [];
  const byAny = `in namespace "${ns}" by any PodIdentityPolicy`;

  // Mode: omitted allowedModes allows both; no matching policy allows both.
  if (matching.length > 0 && !matching.some((p) => !p.spec.allowedModes || p.spec.allowedModes.includes(input.mode))) {
    violations.push(`mode: "${input.mode}" is not allowed ${byAny}`);
  }

  const existing = input.spec.identity.existing;
  if (existing) {
    if (!matching.some((p) => (p.spec.allowedExistingIdentities ?? []).some((pattern) => matchesPathPattern(pattern, existing.resourceId)))) {
      violations.push(`identity.existing.resourceId: "${existing.resourceId}" is not allowed ${byAny} (allowedExistingIdentities)`);
    }
  } else {
    const rg = input.managedResourceGroup ?? input.defaultResourceGroup;
    if (rg.toLowerCase() !== input.defaultResourceGroup.toLowerCase()) {
      const rgScope = `/subscriptions/${input.subscriptionId}/resourceGroups/${rg}`;
      if (!matching.some((p) => allowsScope(p, rgScope))) {
        violations.push(`identity.managed.resourceGroup: "${rg}" is not the operator's default resource group and is not allowed ${byAny} (allowedScopes)`);
      }
    }
  }

  (input.spec.roleAssignments ?? []).forEach((ra, index) => {
    const info = input.roleInfo?.get(ra.role);
    const roleAllowed = matching.filter((p) => allowsRole(p, ra.role, info));
    if (roleAllowed.length === 0) {
      violations.push(`roleAssignments[${index}]: role "${ra.role}" is not allowed ${byAny}`);
      deniedRoles.push(index);
    } else if (!roleAllowed.some((p) => allowsScope(p, ra.scope))) {
      violations.push(`roleAssignments[${index}]: scope "${ra.scope}" is not allowed for role "${ra.role}" ${byAny}`);
      deniedRoles.push(index);
    }
  });

  return { allowed: violations.length === 0, violations, deniedRoles, policies: names };
}
