/**
 * What is desired: everything here is computed from the informer caches (and, for the policy, role
 * definitions read from Azure); nothing writes.
 */
import { matchesSelector } from '../../lib/api/selector.js';
import { CONDITION_READY, type Mode, type PodIdentity } from '../../lib/api/types.js';
import { ThrottledError } from '../azure/errors.js';
import { normalizeId, roleAssignmentName, roleDefinitionGuid, scaleSetOfProviderId } from '../azure/ids.js';
import type { AzureClients } from '../azure/types.js';
import { evaluatePolicy, type PolicyDecision, type RoleInfo } from '../policy/evaluate.js';
import type { ReconcilerSettings } from './deps.js';
import { federatedCredentialName, MANAGED_BY, serviceAccountSubject, TAG_MANAGED_BY, TAG_NAMESPACE } from './names.js';
import type { ClusterView, SlimPod } from './ports.js';

export const keyOf = (pid: PodIdentity): string => `${pid.metadata.namespace}/${pid.metadata.name}`;

export const modeOf = (pid: PodIdentity, settings: ReconcilerSettings): Mode => pid.spec.mode ?? settings.defaultMode;

/** The identities a PodIdentity uses or names, canonical: the one its status records and its `identity.existing`. */
export function identityIdsOf(pid: PodIdentity): string[] {
  const ids = new Set<string>();
  if (pid.status?.resourceId) ids.add(normalizeId(pid.status.resourceId));
  if (pid.spec.identity.existing?.resourceId) ids.add(normalizeId(pid.spec.identity.existing.resourceId));
  return [...ids];
}

/** Pods that still occupy a node (not finished). */
const isActive = (pod: SlimPod): boolean => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

export function selectedPods(view: ClusterView, pid: PodIdentity): SlimPod[] {
  const ns = pid.metadata.namespace ?? '';
  // Without a selector, the label index gives exactly the selected pods; no scan of the namespace.
  if (!pid.spec.selector) return view.podsLabelledFor(ns, pid.metadata.name ?? '').filter(isActive);
  const selector = pid.spec.selector;
  return view.pods(ns).filter((p) => isActive(p) && matchesSelector(selector, p.metadata.labels));
}

export function desiredServiceAccounts(view: ClusterView, pid: PodIdentity): string[] {
  const set = new Set<string>(pid.spec.serviceAccounts ?? []);
  for (const pod of selectedPods(view, pid)) set.add(pod.spec?.serviceAccountName || 'default');
  return [...set].sort();
}

export function desiredScaleSets(view: ClusterView, pid: PodIdentity): { scaleSets: Map<string, { id: string; nodes: Set<string> }>; unmapped: string[] } {
  const scaleSets = new Map<string, { id: string; nodes: Set<string> }>();
  const unmapped = new Set<string>();
  for (const pod of selectedPods(view, pid)) {
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) continue;
    const ss = scaleSetOfProviderId(view.node(nodeName)?.spec?.providerID);
    if (!ss) {
      unmapped.add(nodeName);
      continue;
    }
    const entry = scaleSets.get(normalizeId(ss)) ?? { id: ss, nodes: new Set<string>() };
    entry.nodes.add(nodeName);
    scaleSets.set(normalizeId(ss), entry);
  }
  return { scaleSets, unmapped: [...unmapped].sort() };
}

/** Converged status for this generation and the same desired FIC/scale-set sets as the caches give now. */
export function isConverged(view: ClusterView, pid: PodIdentity, mode: Mode): boolean {
  const s = pid.status;
  if (!s || s.observedGeneration !== pid.metadata.generation || s.mode !== mode) return false;
  if (!s.conditions?.some((c) => c.type === CONDITION_READY && c.status === 'True')) return false;
  if (mode === 'Federated') {
    const want = desiredServiceAccounts(view, pid).map((sa) => serviceAccountSubject(pid.metadata.namespace ?? '', sa));
    const have = (s.federatedCredentials ?? []).map((f) => f.subject).sort();
    return JSON.stringify(want.sort()) === JSON.stringify(have);
  }
  const { scaleSets, unmapped } = desiredScaleSets(view, pid);
  if (unmapped.length) return false;
  const want = [...scaleSets.values()].map((e) => `${normalizeId(e.id)}=${[...e.nodes].sort().join(',')}`).sort();
  const have = (s.nodeAssignments ?? []).map((n) => `${normalizeId(n.scaleSet)}=${[...(n.nodes ?? [])].sort().join(',')}`).sort();
  return JSON.stringify(want) === JSON.stringify(have) && (s.nodeAssignments ?? []).every((n) => n.state === 'Assigned');
}

function evaluate(view: ClusterView, settings: ReconcilerSettings, pid: PodIdentity, roleInfo?: ReadonlyMap<string, RoleInfo>): PolicyDecision {
  const ns = pid.metadata.namespace ?? '';
  return evaluatePolicy({
    namespace: ns,
    namespaceLabels: view.namespaceLabels(ns),
    policies: view.policies(),
    spec: pid.spec,
    mode: modeOf(pid, settings),
    managedResourceGroup: pid.spec.identity.managed?.resourceGroup,
    subscriptionId: settings.subscriptionId,
    defaultResourceGroup: settings.defaultResourceGroup,
    roleInfo,
  });
}

/** Policy first; resolve role names/ids (reads only) just when a name-vs-id comparison could change the answer. */
export async function decide(view: ClusterView, settings: ReconcilerSettings, azure: AzureClients, pid: PodIdentity): Promise<PolicyDecision> {
  const first = evaluate(view, settings, pid);
  // A spec with a non-canonical id gets no Azure call at all, not even a read.
  if (first.roles.size === 0 || first.namespaceUnknown || first.reason === 'InvalidSpec') return first;
  const info = new Map<string, RoleInfo>();
  for (const i of first.roles.keys()) {
    const ra = pid.spec.roleAssignments?.[i];
    if (!ra) continue;
    try {
      const def = await azure.roles.resolveRole(ra.role, ra.scope);
      info.set(ra.role, { name: def.roleName, guid: roleDefinitionGuid(def.id) });
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
    }
  }
  return info.size ? evaluate(view, settings, pid, info) : first;
}

/**
 * What the other PodIdentities that use the same identity hold: the role assignments and federated credentials
 * a PodIdentity releasing its own must leave alone. Their status records them (the operator writes status only
 * after the policy allowed it); same-namespace sharers also claim what their selected pods need right now.
 * PodIdentities being deleted claim nothing: they are letting go.
 */
export function othersClaims(view: ClusterView, pid: PodIdentity, identityId: string, principalId: string | undefined): { roleAssignments: Set<string>; credentials: Set<string> } {
  const roleAssignments = new Set<string>();
  const credentials = new Set<string>();
  const me = keyOf(pid);
  const id = normalizeId(identityId);
  for (const other of view.podIdentitiesOnIdentity(identityId)) {
    if (keyOf(other) === me || other.metadata.deletionTimestamp) continue;
    const s = other.status;
    const recorded = !!s?.resourceId && normalizeId(s.resourceId) === id;
    const named = !!other.spec.identity.existing && normalizeId(other.spec.identity.existing.resourceId) === id;
    if (!recorded && !named) continue;
    if (recorded && principalId) {
      for (const ra of s?.roleAssignments ?? []) if (ra.roleDefinitionId && ra.state !== 'Denied') roleAssignments.add(roleAssignmentName(principalId, ra.roleDefinitionId, ra.scope));
    }
    if (recorded) for (const f of s?.federatedCredentials ?? []) credentials.add(f.name);
    if (other.metadata.namespace === pid.metadata.namespace) {
      for (const sa of desiredServiceAccounts(view, other)) credentials.add(federatedCredentialName(serviceAccountSubject(other.metadata.namespace ?? '', sa)));
    }
  }
  return { roleAssignments, credentials };
}

/**
 * The role assignments other PodIdentities on the same identity want right now: their spec entries the
 * policy allows them, resolved (cached reads). Status alone lags: between another PodIdentity's PUT of a shared
 * assignment and its status write, a release going by status would delete a grant that PodIdentity is about to
 * record as Assigned. Only PodIdentities that may use the identity count: one that records it, or one naming it
 * in the same namespace, or in another namespace when the identity's tags (when known) do not show the operator
 * created it for a namespace other than that one. A PodIdentity the policy refuses the identity claims nothing.
 */
export async function othersWantedRoles(d: { view: ClusterView; settings: ReconcilerSettings; azure: AzureClients }, pid: PodIdentity, identityId: string, identityTags: Record<string, string> | undefined, principalId: string): Promise<Set<string>> {
  const out = new Set<string>();
  const me = keyOf(pid);
  const id = normalizeId(identityId);
  for (const other of d.view.podIdentitiesOnIdentity(identityId)) {
    if (keyOf(other) === me || other.metadata.deletionTimestamp || !other.spec.roleAssignments?.length) continue;
    const recorded = !!other.status?.resourceId && normalizeId(other.status.resourceId) === id;
    const named = !!other.spec.identity.existing && normalizeId(other.spec.identity.existing.resourceId) === id;
    if (!named && !recorded) continue;
    if (!recorded && other.metadata.namespace !== pid.metadata.namespace) {
      const createdFor = identityTags?.[TAG_MANAGED_BY] === MANAGED_BY ? identityTags[TAG_NAMESPACE] : undefined;
      if (!identityTags || (createdFor !== undefined && createdFor !== other.metadata.namespace)) continue;
    }
    const decision = await decide(d.view, d.settings, d.azure, other);
    if (decision.namespaceUnknown || decision.identity || decision.mode) continue;
    for (const [i, ra] of other.spec.roleAssignments.entries()) {
      if (decision.roles.has(i)) continue;
      try {
        const def = await d.azure.roles.resolveRole(ra.role, ra.scope);
        out.add(roleAssignmentName(principalId, def.id, ra.scope));
      } catch (err) {
        if (err instanceof ThrottledError) throw err;
      }
    }
  }
  return out;
}
