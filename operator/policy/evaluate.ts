import { matchesSelector } from '../../lib/api/selector.js';
import type { Mode, PodIdentityPolicy, PodIdentitySpec } from '../../lib/api/types.js';
import { parseRole } from '../azure/arm-id.js';
import { matchesPathPattern } from './patterns.js';
import { invalidPolicyEntries, invalidSpecIds } from './spec-ids.js';

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

/**
 * What the policies decided, one field per kind of denial, each holding the message that names the offending
 * entry. Callers act on the fields; `violations()` is only for display.
 */
export interface PolicyDecision {
  allowed: boolean;
  /**
   * Why it is not allowed: `InvalidSpec` when an ARM id in the spec is not canonical (its field then carries the
   * message, and nothing is sent to Azure for the spec, not even a read), else `PolicyDenied`.
   */
  reason: 'PolicyDenied' | 'InvalidSpec';
  /** The namespace's labels are not known yet: it matches no policy and nothing is allowed until they are. */
  namespaceUnknown?: string;
  /** The effective mode is not allowed. */
  mode?: string;
  /** The identity (`identity.existing`, or a managed identity's resource group) is not allowed. */
  identity?: string;
  /** Denied `spec.roleAssignments` entries, by index. */
  roles: ReadonlyMap<number, string>;
  /** Names of the policies that select the namespace. */
  policies: string[];
}

/** Every denial message, in spec order, for conditions, Events and logs. */
export function violations(d: PolicyDecision): string[] {
  return [d.namespaceUnknown, d.mode, d.identity, ...[...d.roles.entries()].sort(([a], [b]) => a - b).map(([, m]) => m)].filter((m): m is string => !!m);
}

/** The definition GUID when `role` is a canonical roleDefinitionId or a bare GUID; undefined for a role name. */
function definitionGuid(role: string): string | undefined {
  const p = parseRole(role);
  return p.ok ? p.value.guid : undefined;
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
 * one policy allows it whole, mode included, so policy A's roles never combine with policy B's scopes or
 * mode). Without any matching policy: only a managed identity in the operator's default resource group, and no
 * roles.
 */
export function evaluatePolicy(input: PolicyInput): PolicyDecision {
  const ns = input.namespace;
  if (input.namespaceLabels === undefined) {
    // A selector cannot be tested against labels nobody has seen: fail closed until the namespace is in the cache.
    const namespaceUnknown = `namespace "${ns}" is not known to the operator yet: no PodIdentityPolicy can match it until its labels are`;
    return { allowed: false, reason: 'PolicyDenied', namespaceUnknown, roles: new Map(), policies: [] };
  }
  const labels = input.namespaceLabels;
  const matching = input.policies.filter((p) => matchesSelector(p.spec.namespaceSelector ?? {}, labels));
  const names = matching.map((p) => p.metadata.name ?? '');
  const decision: { mode?: string; identity?: string; roles: Map<number, string> } = { roles: new Map() };
  const byAny = `in namespace "${ns}" by any PodIdentityPolicy`;
  // Canonical ids first: nothing below (nor the caller) may act on an id that is not canonical.
  const invalid = invalidSpecIds(input.spec);
  const identityInvalid = invalid.filter((f) => f.field.startsWith('identity.')).map((f) => `${f.field}: ${f.message}`);
  if (identityInvalid.length) decision.identity = identityInvalid.join('; ');
  for (const f of invalid) {
    if (f.roleIndex === undefined) continue;
    const earlier = decision.roles.get(f.roleIndex);
    decision.roles.set(f.roleIndex, earlier ? `${earlier}; ${f.field}: ${f.message}` : `${f.field}: ${f.message}`);
  }
  const ignored = matching.flatMap(invalidPolicyEntries);
  const withIgnored = (message: string, list: string): string => {
    const notes = ignored.filter((n) => n.includes(` ${list}[`));
    return notes.length ? `${message} (ignored: ${notes.join('; ')})` : message;
  };

  // Mode: omitted allowedModes allows both; no matching policy allows both.
  const allowsMode = (p: PodIdentityPolicy): boolean => !p.spec.allowedModes || p.spec.allowedModes.includes(input.mode);
  if (matching.length > 0 && !matching.some(allowsMode)) {
    decision.mode = `mode: "${input.mode}" is not allowed ${byAny}`;
  }
  // The mode decides where the identity lives (Node mode puts it on the nodes' scale sets), so it is part of
  // every entry: an identity or role is allowed only by a policy that also allows the mode. Otherwise one
  // policy's Node mode would combine with another's Federated-only roles. (With the mode denied, the entries
  // are still judged against every matching policy, for the messages.)
  const eligible = decision.mode ? matching : matching.filter(allowsMode);

  const existing = input.spec.identity.existing;
  if (identityInvalid.length) {
    // already reported; no policy question to ask about an id that is not canonical
  } else if (existing) {
    if (!eligible.some((p) => (p.spec.allowedExistingIdentities ?? []).some((pattern) => matchesPathPattern(pattern, existing.resourceId)))) {
      decision.identity = withIgnored(`identity.existing.resourceId: "${existing.resourceId}" is not allowed ${byAny} (allowedExistingIdentities)`, 'allowedExistingIdentities');
    }
  } else {
    const rg = input.managedResourceGroup ?? input.defaultResourceGroup;
    if (rg.toLowerCase() !== input.defaultResourceGroup.toLowerCase()) {
      const rgScope = `/subscriptions/${input.subscriptionId}/resourceGroups/${rg}`;
      if (!eligible.some((p) => allowsScope(p, rgScope))) {
        decision.identity = withIgnored(`identity.managed.resourceGroup: "${rg}" is not the operator's default resource group and is not allowed ${byAny} (allowedScopes)`, 'allowedScopes');
      }
    }
  }

  (input.spec.roleAssignments ?? []).forEach((ra, index) => {
    if (decision.roles.has(index)) return; // not canonical: already reported
    const info = input.roleInfo?.get(ra.role);
    const roleAllowed = eligible.filter((p) => allowsRole(p, ra.role, info));
    if (roleAllowed.length === 0) decision.roles.set(index, withIgnored(`roleAssignments[${index}]: role "${ra.role}" is not allowed ${byAny}`, 'allowedRoles'));
    else if (!roleAllowed.some((p) => allowsScope(p, ra.scope))) decision.roles.set(index, withIgnored(`roleAssignments[${index}]: scope "${ra.scope}" is not allowed for role "${ra.role}" ${byAny}`, 'allowedScopes'));
  });

  const reason = invalid.length ? 'InvalidSpec' : 'PolicyDenied';
  return { allowed: !decision.mode && !decision.identity && decision.roles.size === 0, reason, ...decision, policies: names };
}
