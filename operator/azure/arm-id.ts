/**
 * The one parser for ARM ids the operator reads from PodIdentities and PodIdentityPolicies.
 *
 * Canonical form. An id is accepted only if it is already canonical: every segment non-empty, no `.` or `..`
 * segment, no percent-escape, backslash, `?`, `#`, whitespace or control character, and the structure ARM
 * defines (`/subscriptions/{guid}[/resourceGroups/{rg}][/providers/{namespace}/{type}/{name}[/{type}/{name}]…]`,
 * or a management group). Nothing is repaired: the Azure SDKs put scopes into URLs unencoded, and URL handling
 * resolves dot segments (also percent-escaped ones), turns backslashes into slashes and drops tabs, so any
 * repair here could differ from what Azure finally acts on. Rejecting instead means the string checked is the
 * string sent.
 *
 * Case. ARM resource ids are case-insensitive, so two ids are the same resource when their lower-case forms
 * are equal (`key`). Names are restricted to ASCII, where lower-casing is exact (no Unicode folding surprises
 * such as the Kelvin sign lower-casing to `k`). The id keeps the caller's casing: it is what Azure receives.
 */

export type ArmIdKind = 'managementGroup' | 'subscription' | 'resourceGroup' | 'resource';

export interface ArmId {
  /** The id exactly as given (already canonical). */
  id: string;
  /** Comparison key: the id lower-cased (ARM ids are case-insensitive). */
  key: string;
  kind: ArmIdKind;
  managementGroup?: string;
  subscriptionId?: string;
  resourceGroup?: string;
  /** For a resource: its provider namespace, its full type (`storageAccounts/blobServices`) and its last name. */
  provider?: string;
  type?: string;
  name?: string;
  /**
   * For a resource: it is an extension resource (a later `providers` section), so provider/type/name describe
   * the extension, not a resource in `resourceGroup`. Such an id never names a top-level resource.
   */
  extension?: boolean;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Azure's resource group (and management group) name rule: `[-\w._()]`, 1-90, not ending in a period. */
const GROUP_NAME = /^[-\w.()]{0,89}[-\w()]$/;
/** Whether `name` is a valid resource group name (it becomes a path segment of ids the operator builds). */
export const isResourceGroupName = (name: string): boolean => typeof name === 'string' && GROUP_NAME.test(name);
const PROVIDER_NAMESPACE = /^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+$/;
const RESOURCE_TYPE = /^[A-Za-z][A-Za-z0-9]*$/;
/** RFC 3986 path characters that need no escaping and that URL handling never rewrites (no `%`, no `*`). */
const NAME = /^[\w.()~:@!$&'+,;=-]+$/;
const MAX_LENGTH = 2048;

const fail = (problem: string): { ok: false; problem: string } => ({ ok: false, problem });

/** Problems every ARM id shares, before its structure is looked at. */
function characterProblem(s: string): string | undefined {
  if (s.length === 0) return 'is empty';
  if (s.length > MAX_LENGTH) return `is longer than ${MAX_LENGTH} characters`;
  // Control, format and whitespace characters: URL handling drops some of them (a tab inside ".\t." makes "..").
  if (/[\p{Cc}\p{Cf}\p{Z}\s]/u.test(s)) return 'contains whitespace or a control character';
  if (s.includes('%')) return 'contains a percent-escape ("%"); write the characters themselves';
  if (s.includes('\\')) return 'contains a backslash';
  if (/[?#]/.test(s)) return 'contains "?" or "#"';
  if (!s.startsWith('/')) return 'does not start with "/"';
  return undefined;
}

function segmentsOf(s: string): Parsed<string[]> {
  const segments = s.slice(1).split('/');
  for (const seg of segments) {
    if (seg === '') return fail('has an empty path segment ("//" or a trailing "/")');
    if (seg === '.' || seg === '..') return fail(`has a "${seg}" path segment`);
  }
  return { ok: true, value: segments };
}

const eq = (a: string | undefined, b: string): boolean => a?.toLowerCase() === b.toLowerCase();

/**
 * Parses any ARM id in canonical form: a management group, a subscription, a resource group, or a resource
 * (in a resource group or at subscription level, nested types and extension resources included).
 */
export function parseArmId(input: string): Parsed<ArmId> {
  if (typeof input !== 'string') return fail('is not a string');
  const charProblem = characterProblem(input);
  if (charProblem) return fail(charProblem);
  const split = segmentsOf(input);
  if (!split.ok) return split;
  const seg = split.value;
  const base = { id: input, key: input.toLowerCase() };

  if (eq(seg[0], 'providers')) {
    if (seg.length !== 4 || !eq(seg[1], 'Microsoft.Management') || !eq(seg[2], 'managementGroups')) {
      return fail('is not a subscription, resource group, resource or /providers/Microsoft.Management/managementGroups/{name} id');
    }
    if (!GROUP_NAME.test(seg[3]!)) return fail(`has an invalid management group name "${seg[3]}"`);
    return { ok: true, value: { ...base, kind: 'managementGroup', managementGroup: seg[3]! } };
  }
  if (!eq(seg[0], 'subscriptions') || seg.length < 2) return fail('does not start with /subscriptions/{subscriptionId}');
  const subscriptionId = seg[1]!;
  if (!GUID.test(subscriptionId)) return fail(`has a subscription id "${subscriptionId}" that is not a GUID`);
  if (seg.length === 2) return { ok: true, value: { ...base, kind: 'subscription', subscriptionId } };

  let i = 2;
  let resourceGroup: string | undefined;
  if (eq(seg[2], 'resourceGroups')) {
    resourceGroup = seg[3];
    if (resourceGroup === undefined) return fail('ends after "resourceGroups" without a resource group name');
    if (!GROUP_NAME.test(resourceGroup)) return fail(`has an invalid resource group name "${resourceGroup}" (letters, digits, "-", "_", ".", "(", ")"; at most 90; not ending in ".")`);
    i = 4;
    if (seg.length === 4) return { ok: true, value: { ...base, kind: 'resourceGroup', subscriptionId, resourceGroup } };
  }
  if (!eq(seg[i], 'providers')) return fail(`has "${seg[i]}" where "${resourceGroup === undefined ? 'resourceGroups" or "providers' : 'providers'}" belongs`);

  // One or more provider sections: providers/{namespace}/{type}/{name}[/{type}/{name}]…, where a later
  // "providers" starts an extension resource's section.
  let provider: string | undefined;
  const types: string[] = [];
  let name: string | undefined;
  let sections = 0;
  while (i < seg.length) {
    if (!eq(seg[i], 'providers')) {
      const type = seg[i]!;
      const n = seg[i + 1];
      if (!RESOURCE_TYPE.test(type)) return fail(`has an invalid resource type "${type}"`);
      if (n === undefined) return fail(`ends with resource type "${type}" without a name`);
      if (!NAME.test(n)) return fail(`has an invalid resource name "${n}"`);
      types.push(type);
      name = n;
      i += 2;
      continue;
    }
    const namespace = seg[i + 1];
    if (namespace === undefined) return fail('ends after "providers" without a provider namespace');
    if (!PROVIDER_NAMESPACE.test(namespace)) return fail(`has an invalid provider namespace "${namespace}" (like Microsoft.Storage)`);
    const type = seg[i + 2];
    const n = seg[i + 3];
    if (type === undefined || n === undefined) return fail(`has provider "${namespace}" without a resource type and name`);
    if (!RESOURCE_TYPE.test(type)) return fail(`has an invalid resource type "${type}"`);
    if (!NAME.test(n)) return fail(`has an invalid resource name "${n}"`);
    // A later section is an extension resource: its own namespace and type.
    provider = namespace;
    sections++;
    types.length = 0;
    types.push(type);
    name = n;
    i += 4;
  }
  return {
    ok: true,
    value: { ...base, kind: 'resource', subscriptionId, ...(resourceGroup !== undefined ? { resourceGroup } : {}), provider: provider!, type: types.join('/'), name: name!, ...(sections > 1 ? { extension: true } : {}) },
  };
}

/** A role-assignment scope: a management group, a subscription, a resource group, or a resource in one. */
export function parseScope(input: string): Parsed<ArmId> {
  const p = parseArmId(input);
  if (!p.ok) return p;
  if (p.value.kind === 'resource' && p.value.resourceGroup === undefined) return fail('is a subscription-level resource, which is not a supported scope');
  return p;
}

/** A user-assigned identity: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`. */
export function parseIdentityResourceId(input: string): Parsed<ArmId> {
  return parseTyped(input, 'Microsoft.ManagedIdentity', 'userAssignedIdentities', 'a user-assigned identity id');
}

/** A top-level resource of `provider`/`type` in a resource group. */
export function parseTyped(input: string, provider: string, type: string, what: string): Parsed<ArmId> {
  const p = parseArmId(input);
  if (!p.ok) return p;
  const v = p.value;
  // Exactly one provider section: an extension resource's own namespace and type could otherwise pose as
  // `provider`/`type` (`…/userAssignedIdentities/app/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`
  // would pass a policy allowing `…/app` and then be read as `admin`).
  if (v.kind !== 'resource' || v.resourceGroup === undefined || v.extension || !eq(v.provider, provider) || !eq(v.type, type)) {
    return fail(`is not ${what} (/subscriptions/{id}/resourceGroups/{rg}/providers/${provider}/${type}/{name})`);
  }
  return p;
}

export interface RoleRef {
  /** The role as given. */
  role: string;
  /** A role name, or a role definition (by GUID, with or without its id). */
  kind: 'name' | 'definition';
  /** The definition GUID, lower-case, when kind is `definition`. */
  guid?: string;
}

/** Azure role names: letters, digits, spaces and `._()-`, starting with a letter or digit, no trailing space. */
const ROLE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9 ._()-]{0,126}[A-Za-z0-9._()-])?$/;

/**
 * A role given in a spec or policy: a role name ("Storage Blob Data Reader"), a bare definition GUID, or a
 * roleDefinitionId (`[/subscriptions/{s}]/providers/Microsoft.Authorization/roleDefinitions/{guid}`).
 */
export function parseRole(input: string): Parsed<RoleRef> {
  if (typeof input !== 'string') return fail('is not a string');
  if (GUID.test(input)) return { ok: true, value: { role: input, kind: 'definition', guid: input.toLowerCase() } };
  if (!input.startsWith('/')) {
    if (/[\p{Cc}\p{Cf}]/u.test(input) || !ROLE_NAME.test(input)) return fail('is neither a role name (letters, digits, spaces and ._()-) nor a roleDefinitionId');
    if (/ {2}/.test(input)) return fail('has two spaces in a row');
    return { ok: true, value: { role: input, kind: 'name' } };
  }
  const charProblem = characterProblem(input);
  if (charProblem) return fail(charProblem);
  const split = segmentsOf(input);
  if (!split.ok) return split;
  const seg = split.value;
  const at = eq(seg[0], 'subscriptions') && seg.length === 6 && GUID.test(seg[1]!) ? 2 : 0;
  const guid = seg[at + 3];
  if (seg.length !== at + 4 || !eq(seg[at], 'providers') || !eq(seg[at + 1], 'Microsoft.Authorization') || !eq(seg[at + 2], 'roleDefinitions') || !GUID.test(guid ?? '')) {
    return fail('is not a roleDefinitionId ([/subscriptions/{id}]/providers/Microsoft.Authorization/roleDefinitions/{guid})');
  }
  return { ok: true, value: { role: input, kind: 'definition', guid: guid!.toLowerCase() } };
}

/**
 * A policy's allowedScopes / allowedExistingIdentities entry: a canonical id prefix, or a glob where `*` stands
 * for part of one segment and a final `/**` for anything beneath. Returns the lower-cased pattern.
 */
export function parsePathPattern(input: string): Parsed<string> {
  if (typeof input !== 'string') return fail('is not a string');
  if (input === '/**') return { ok: true, value: input };
  const charProblem = characterProblem(input);
  if (charProblem) return fail(charProblem);
  const split = segmentsOf(input);
  if (!split.ok) return split;
  const segs = split.value;
  for (const [i, seg] of segs.entries()) {
    if (seg === '**') {
      if (i !== segs.length - 1) return fail('has "**" before the last segment (only a final "/**" is allowed)');
      continue;
    }
    if (seg.includes('**')) return fail(`has "**" inside segment "${seg}"`);
    if (!NAME.test(seg.replace(/\*/g, 'x'))) return fail(`has an invalid segment "${seg}"`);
  }
  return { ok: true, value: input.toLowerCase() };
}
