import { matchesSelector } from '../../lib/api/selector.js';
import {
  CONDITION_CREDENTIALS_READY,
  CONDITION_IDENTITY_READY,
  CONDITION_NODES_ASSIGNED,
  CONDITION_READY,
  CONDITION_ROLES_ASSIGNED,
  DEFAULT_SELECTOR_LABEL,
  FINALIZER,
  MAX_FEDERATED_CREDENTIALS,
  TOKEN_EXCHANGE_AUDIENCE,
  effectiveSelector,
  type Condition,
  type ConditionStatus,
  type FederatedCredentialStatus,
  type Mode,
  type NodeAssignmentStatus,
  type PodIdentity,
  type PodIdentityStatus,
  type RoleAssignmentStatus,
} from '../../lib/api/types.js';
import { setCondition } from '../../lib/k8s/conditions.js';
import type { Logger } from '../../lib/log.js';
import { LimitExceededError, NotFoundError, PrincipalNotFoundError, ThrottledError } from '../azure/errors.js';
import { identityResourceId, normalizeId, roleAssignmentName, roleDefinitionGuid, scaleSetOfProviderId } from '../azure/ids.js';
import type { AzureClients, AzureIdentity, RoleDefinition } from '../azure/types.js';
import { evaluatePolicy, type PolicyDecision, type RoleInfo } from '../policy/evaluate.js';
import { defaultIdentityName, federatedCredentialName, MANAGED_BY, serviceAccountSubject, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID } from './names.js';
import type { OwnershipStore } from './ownership.js';
import type { ClusterView, PodIdentityWriter, SlimPod } from './ports.js';
import type { Demand, ScaleSetBatcher } from './scaleset-batcher.js';

export interface ReconcilerSettings {
  subscriptionId: string;
  defaultResourceGroup: string;
  location: string;
  defaultMode: Mode;
  /** The cluster's service-account issuer; or resolved from `aksClusterId`. */
  oidcIssuer?: string;
  aksClusterId?: string;
  /** How often a converged PodIdentity is re-checked against Azure (drift repair). Default 10 min. */
  fullSyncIntervalMs?: number;
  /** Batch window of the scale-set batcher (to know when to look again). */
  batchWindowMs?: number;
}

export interface ReconcilerDeps {
  view: ClusterView;
  writer: PodIdentityWriter;
  azure: AzureClients;
  batcher: ScaleSetBatcher;
  ownership: OwnershipStore;
  settings: ReconcilerSettings;
  logger?: Logger;
  now?: () => Date;
}

export type ReconcileResult = { requeueAfterMs?: number } | void;

interface Cond {
  status: ConditionStatus;
  reason: string;
  message: string;
}

const ok = (reason: string, message: string): Cond => ({ status: 'True', reason, message });
const bad = (reason: string, message: string): Cond => ({ status: 'False', reason, message });
const errMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Pods that still occupy a node (not finished). */
const isActive = (pod: SlimPod): boolean => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

/** Whether an Azure FIC is one this operator made for `namespace` (its name is recomputable from its subject). */
function isOurCredential(namespace: string, fic: { name: string; subject: string }): boolean {
  return fic.subject.startsWith(`system:serviceaccount:${namespace}:`) && fic.name === federatedCredentialName(fic.subject);
}

/** Whether an Azure role assignment is one this operator made (its name is the deterministic one). */
function isOurAssignment(ra: { name: string; principalId: string; roleDefinitionId: string; scope: string }): boolean {
  return !!ra.scope && !!ra.roleDefinitionId && ra.name.toLowerCase() === roleAssignmentName(ra.principalId, ra.roleDefinitionId, ra.scope);
}

/**
 * The PodIdentity reconciler: level-triggered and idempotent. It reads the informer caches (ClusterView),
 * converges Azure through the narrow clients, and writes status once per reconcile, only when it changed.
 */
export class PodIdentityReconciler {
  private issuer?: string;
  private readonly lastFullSync = new Map<string, { generation: number; at: number }>();
  private readonly principalAttempts = new Map<string, number>();
  /** Per key: no Azure call before this time (the last 429's Retry-After). */
  private readonly throttledUntil = new Map<string, number>();
  /**
   * Per key: resourceVersions our own writes replaced. A cached copy still at one of them predates our last
   * write, whose watch event is on its way and brings the key back; acting on it could repeat Azure writes.
   */
  private readonly superseded = new Map<string, Set<string>>();

  constructor(private readonly deps: ReconcilerDeps) {
    this.issuer = deps.settings.oidcIssuer;
  }

  /** For the batcher: the demands of Node-mode PodIdentities as recorded in their status. */
  recordedDemands(): Demand[] {
    const out: Demand[] = [];
    for (const pid of this.deps.view.podIdentities()) {
      if (pid.metadata.deletionTimestamp) continue; // being deleted: its identity leaves the scale sets
      if (pid.status?.mode !== 'Node' || !pid.status.resourceId) continue;
      out.push({ key: `${pid.metadata.namespace}/${pid.metadata.name}`, identityId: pid.status.resourceId, scaleSets: (pid.status.nodeAssignments ?? []).map((n) => n.scaleSet) });
    }
    return out;
  }

  /**
   * PodIdentity keys in `namespace` whose selector matches the pod. Runs for every pod event, so it looks up
   * the PodIdentity the default label names instead of testing every PodIdentity in the namespace.
   */
  keysSelecting(pod: SlimPod): string[] {
    const ns = pod.metadata.namespace;
    if (!ns) return [];
    const keys: string[] = [];
    const named = pod.metadata.labels?.[DEFAULT_SELECTOR_LABEL];
    const byLabel = named === undefined ? undefined : this.deps.view.podIdentity(`${ns}/${named}`);
    if (byLabel && !byLabel.spec.selector) keys.push(`${ns}/${named}`);
    for (const pid of this.deps.view.podIdentitiesWithSelector(ns)) if (matchesSelector(effectiveSelector(pid), pod.metadata.labels)) keys.push(`${ns}/${pid.metadata.name}`);
    return keys;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const pid = this.deps.view.podIdentity(key);
    if (!pid) {
      this.forget(key);
      this.throttledUntil.delete(key);
      this.superseded.delete(key);
      return;
    }
    const stale = this.superseded.get(key);
    if (stale?.has(pid.metadata.resourceVersion ?? '')) return;
    this.superseded.delete(key);
    // Events (our own status write, a pod change) re-enqueue a key at once; Retry-After must still hold.
    const waitMs = (this.throttledUntil.get(key) ?? 0) - Date.now();
    if (waitMs > 0) return { requeueAfterMs: waitMs };
    this.throttledUntil.delete(key);
    try {
      if (pid.metadata.deletionTimestamp) return await this.finalize(key, pid);
      return await this.converge(key, pid);
    } catch (err) {
      if (err instanceof ThrottledError) {
        // Honour Retry-After for this key only; other keys keep going.
        this.deps.logger?.warn('Azure throttled; requeueing after Retry-After', { key, operation: err.operation, retryAfterMs: err.retryAfterMs });
        this.throttledUntil.set(key, Date.now() + err.retryAfterMs);
        return { requeueAfterMs: err.retryAfterMs };
      }
      throw err;
    }
  }

  private forget(key: string): void {
    this.lastFullSync.delete(key);
    this.principalAttempts.delete(key);
  }

  private modeOf(pid: PodIdentity): Mode {
    return pid.spec.mode ?? this.deps.settings.defaultMode;
  }

  private managedIdentityId(pid: PodIdentity): string {
    const m = pid.spec.identity.managed ?? {};
    const name = m.name ?? defaultIdentityName(pid.metadata.namespace ?? '', pid.metadata.name ?? '');
    return identityResourceId(this.deps.settings.subscriptionId, m.resourceGroup ?? this.deps.settings.defaultResourceGroup, name);
  }

  private identityIdOf(pid: PodIdentity): string {
    return pid.spec.identity.existing?.resourceId ?? this.managedIdentityId(pid);
  }

  private evaluate(pid: PodIdentity, roleInfo?: ReadonlyMap<string, RoleInfo>): PolicyDecision {
    const ns = pid.metadata.namespace ?? '';
    return evaluatePolicy({
      namespace: ns,
      namespaceLabels: this.deps.view.namespaceLabels(ns),
      policies: this.deps.view.policies(),
      spec: pid.spec,
      mode: this.modeOf(pid),
      managedResourceGroup: pid.spec.identity.managed?.resourceGroup,
      subscriptionId: this.deps.settings.subscriptionId,
      defaultResourceGroup: this.deps.settings.defaultResourceGroup,
      roleInfo,
    });
  }

  /** Policy first; resolve role names/ids (reads only) just when a name-vs-id comparison could change the answer. */
  private async decide(pid: PodIdentity): Promise<PolicyDecision> {
    const first = this.evaluate(pid);
    // A spec with a non-canonical id gets no Azure call at all, not even a read.
    if (first.deniedRoles.length === 0 || first.reason === 'InvalidSpec') return first;
    const info = new Map<string, RoleInfo>();
    for (const i of first.deniedRoles) {
      const ra = pid.spec.roleAssignments?.[i];
      if (!ra) continue;
      try {
        const def = await this.deps.azure.roles.resolveRole(ra.role, ra.scope);
        info.set(ra.role, { name: def.roleName, guid: roleDefinitionGuid(def.id) });
      } catch (err) {
        if (err instanceof ThrottledError) throw err;
      }
    }
    return info.size ? this.evaluate(pid, info) : first;
  }

  private selectedPods(pid: PodIdentity): SlimPod[] {
    const ns = pid.metadata.namespace ?? '';
    // Without a selector, the label index gives exactly the selected pods; no scan of the namespace.
    if (!pid.spec.selector) return this.deps.view.podsLabelledFor(ns, pid.metadata.name ?? '').filter(isActive);
    const selector = pid.spec.selector;
    return this.deps.view.pods(ns).filter((p) => isActive(p) && matchesSelector(selector, p.metadata.labels));
  }

  private desiredServiceAccounts(pid: PodIdentity): string[] {
    const set = new Set<string>(pid.spec.serviceAccounts ?? []);
    for (const pod of this.selectedPods(pid)) set.add(pod.spec?.serviceAccountName || 'default');
    return [...set].sort();
  }

  private desiredScaleSets(pid: PodIdentity): { scaleSets: Map<string, { id: string; nodes: Set<string> }>; unmapped: string[] } {
    const scaleSets = new Map<string, { id: string; nodes: Set<string> }>();
    const unmapped = new Set<string>();
    for (const pod of this.selectedPods(pid)) {
      const nodeName = pod.spec?.nodeName;
      if (!nodeName) continue;
      const ss = scaleSetOfProviderId(this.deps.view.node(nodeName)?.spec?.providerID);
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

  private async resolveIssuer(): Promise<string> {
    if (this.issuer) return this.issuer;
    const cluster = this.deps.settings.aksClusterId;
    if (!cluster) throw new Error('no OIDC issuer: set --oidc-issuer or --aks-cluster-id');
    this.issuer = await this.deps.azure.cluster.getOidcIssuer(cluster);
    return this.issuer;
  }

  // ---------------------------------------------------------------- converge

  /** Our write replaced `pid`'s resourceVersion. */
  private noteWrite(key: string, pid: PodIdentity): void {
    const rv = pid.metadata.resourceVersion;
    if (!rv) return;
    let set = this.superseded.get(key);
    if (!set) this.superseded.set(key, (set = new Set()));
    set.add(rv);
  }

  private async converge(key: string, pidFromCache: PodIdentity): Promise<ReconcileResult> {
    let pid = pidFromCache;
    const log = this.deps.logger;
    const ns = pid.metadata.namespace ?? '';
    const name = pid.metadata.name ?? '';
    const generation = pid.metadata.generation ?? 0;
    const mode = this.modeOf(pid);
    const status: PodIdentityStatus = { ...(pid.status ?? {}), mode };
    const conds = new Map<string, Cond>();
    const decision = await this.decide(pid);

    if (!decision.allowed) {
      const message = decision.violations.join('; ');
      await this.revokeDenied(key, pid, decision);
      const policyCond = bad(decision.reason, message);
      const identityDenied = decision.violations.some((v) => v.startsWith('identity') || v.startsWith('mode'));
      const previousIdentity = pid.status?.conditions?.find((c) => c.type === CONDITION_IDENTITY_READY);
      conds.set(CONDITION_IDENTITY_READY, !identityDenied && previousIdentity ? previousIdentity : policyCond);
      conds.set(CONDITION_ROLES_ASSIGNED, policyCond);
      status.roleAssignments = (pid.spec.roleAssignments ?? []).map((ra, i) =>
        decision.deniedRoles.includes(i)
          ? { role: ra.role, scope: ra.scope, state: 'Denied', message: decision.violations.find((v) => v.startsWith(`roleAssignments[${i}]`)) ?? 'denied by policy' }
          : { ...(pid.status?.roleAssignments?.find((s) => s.role === ra.role && s.scope === ra.scope) ?? { role: ra.role, scope: ra.scope }), state: 'Pending', message: 'not applied while the PodIdentity violates policy' },
      );
      conds.set(mode === 'Node' ? CONDITION_NODES_ASSIGNED : CONDITION_CREDENTIALS_READY, policyCond);
      const wasDenied = pid.status?.conditions?.some((c) => c.type === CONDITION_READY && c.reason === decision.reason && c.message === message);
      if (!wasDenied) {
        log?.warn(decision.reason === 'InvalidSpec' ? 'PodIdentity has invalid ARM ids' : 'PodIdentity denied by policy', { namespace: ns, name, violations: decision.violations, policies: decision.policies });
        await this.deps.writer.event(pid, 'Warning', decision.reason, message);
      }
      this.lastFullSync.delete(key);
      await this.writeStatus(pid, status, conds, mode, policyCond);
      return;
    }

    // Fast path: converged for this generation, nothing derived from the caches changed, and Azure was
    // checked recently. Pod churn then costs no ARM calls.
    const last = this.lastFullSync.get(key);
    const periodic = !!last && last.generation === generation && Date.now() - last.at > (this.deps.settings.fullSyncIntervalMs ?? 10 * 60_000);
    const fullSyncDue = !last || last.generation !== generation || periodic;
    if (!fullSyncDue && this.isConverged(pid, mode)) return;

    let prefetched: Settled<AzureIdentity> | undefined;
    if (!pid.metadata.finalizers?.includes(FINALIZER)) {
      // Before any Azure write. The patch carries our resourceVersion: a stale cache read fails and retries.
      // Reading the identity is no side effect, so it runs meanwhile.
      const read = settle(this.deps.azure.identities.get(this.identityIdOf(pid)));
      let rv: string | void;
      try {
        rv = await this.deps.writer.addFinalizer(pid, FINALIZER);
      } finally {
        prefetched = await read;
      }
      if (!rv || rv === pid.metadata.resourceVersion) return; // new version unknown: the update event brings us back
      this.noteWrite(key, pid);
      pid = { ...pid, metadata: { ...pid.metadata, finalizers: [...(pid.metadata.finalizers ?? []), FINALIZER], resourceVersion: rv } };
    }

    let retryAfterMs: number | undefined;
    let retryError: unknown;
    const requeue = (ms: number) => (retryAfterMs = retryAfterMs === undefined ? ms : Math.min(retryAfterMs, ms));

    // ---- identity
    const identityResult = await this.ensureIdentity(pid, prefetched);
    if ('failure' in identityResult) {
      conds.set(CONDITION_IDENTITY_READY, identityResult.failure);
      if (identityResult.requeueAfterMs) requeue(identityResult.requeueAfterMs);
      if (identityResult.error) retryError = identityResult.error;
      conds.set(CONDITION_ROLES_ASSIGNED, bad('IdentityNotReady', 'waiting for the identity'));
      conds.set(mode === 'Node' ? CONDITION_NODES_ASSIGNED : CONDITION_CREDENTIALS_READY, bad('IdentityNotReady', 'waiting for the identity'));
      await this.writeStatus(pid, status, conds, mode);
      if (retryError) throw retryError;
      return retryAfterMs !== undefined ? { requeueAfterMs: retryAfterMs } : undefined;
    }
    const identity = identityResult.identity;
    // Created by this reconcile: a new principal with nothing attached yet, so there is nothing to list.
    const fresh = identityResult.created === true;
    const firstTime = pid.status?.clientId !== identity.clientId;
    Object.assign(status, { clientId: identity.clientId, principalId: identity.principalId, tenantId: identity.tenantId, resourceId: identity.id });
    conds.set(CONDITION_IDENTITY_READY, ok(pid.spec.identity.existing ? 'IdentityFound' : 'IdentityReady', `identity ${identity.name} (clientId ${identity.clientId})`));
    if (firstTime) {
      log?.info(pid.spec.identity.existing ? 'existing identity adopted' : 'managed identity ready', { namespace: ns, name, clientId: identity.clientId, resourceId: identity.id });
      await this.deps.writer.event(pid, 'Normal', 'IdentityReady', `identity ${identity.id} clientId ${identity.clientId}`);
    }

    // ---- role assignments, and at the same time federated credentials or scale sets: they are independent
    // of each other (both need only the identity), so a PodIdentity waits for the slower one, not for both.
    const modeStep = async (): Promise<{ condition: Cond; error?: unknown; requeueAfterMs?: number }> => {
      if (mode === 'Federated') {
        await this.withdrawNodes(key, pid, identity.id, fresh);
        const fic = await this.convergeCredentials(pid, identity, fresh);
        delete status.nodeAssignments;
        status.federatedCredentials = fic.statuses;
        return fic;
      }
      if (!fresh && pid.status?.federatedCredentials?.length) await this.deleteOurCredentials(pid, identity.id);
      const nodes = await this.convergeNodes(key, pid, identity.id, periodic);
      delete status.federatedCredentials;
      status.nodeAssignments = nodes.statuses;
      return nodes;
    };
    // Both settle before we go on: a step still running after this reconcile returned could overlap the next one.
    const [rolesDone, modeDone] = await Promise.allSettled([this.convergeRoles(pid, identity, fresh), modeStep()]);
    if (rolesDone.status === 'rejected' || modeDone.status === 'rejected') {
      const reasons = [rolesDone, modeDone].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      throw reasons.find((e) => e instanceof ThrottledError) ?? reasons[0];
    }
    const roles = rolesDone.value;
    status.roleAssignments = roles.statuses;
    conds.set(CONDITION_ROLES_ASSIGNED, roles.condition);
    if (roles.requeueAfterMs) requeue(roles.requeueAfterMs);
    if (roles.error) retryError ??= roles.error;
    conds.set(mode === 'Federated' ? CONDITION_CREDENTIALS_READY : CONDITION_NODES_ASSIGNED, modeDone.value.condition);
    if (modeDone.value.requeueAfterMs) requeue(modeDone.value.requeueAfterMs);
    if (modeDone.value.error) retryError ??= modeDone.value.error;

    const allTrue = [...conds.values()].every((c) => c.status === 'True');
    if (allTrue && !retryError && retryAfterMs === undefined) this.lastFullSync.set(key, { generation, at: Date.now() });
    else this.lastFullSync.delete(key);
    await this.writeStatus(pid, status, conds, mode);
    if (retryError) throw retryError;
    return retryAfterMs !== undefined ? { requeueAfterMs: retryAfterMs } : undefined;
  }

  /** Converged status for this generation and the same desired FIC/scale-set sets as the caches give now. */
  private isConverged(pid: PodIdentity, mode: Mode): boolean {
    const s = pid.status;
    if (!s || s.observedGeneration !== pid.metadata.generation || s.mode !== mode) return false;
    if (!s.conditions?.some((c) => c.type === CONDITION_READY && c.status === 'True')) return false;
    if (mode === 'Federated') {
      const want = this.desiredServiceAccounts(pid).map((sa) => serviceAccountSubject(pid.metadata.namespace ?? '', sa));
      const have = (s.federatedCredentials ?? []).map((f) => f.subject).sort();
      return JSON.stringify(want.sort()) === JSON.stringify(have);
    }
    const { scaleSets, unmapped } = this.desiredScaleSets(pid);
    if (unmapped.length) return false;
    const want = [...scaleSets.values()].map((e) => `${normalizeId(e.id)}=${[...e.nodes].sort().join(',')}`).sort();
    const have = (s.nodeAssignments ?? []).map((n) => `${normalizeId(n.scaleSet)}=${[...(n.nodes ?? [])].sort().join(',')}`).sort();
    return JSON.stringify(want) === JSON.stringify(have) && (s.nodeAssignments ?? []).every((n) => n.state === 'Assigned');
  }

  /** `created`: the identity did not exist and this call made it. */
  /** The identity's GET, or the result of one already made (`prefetched`). */
  private async readIdentity(resourceId: string, prefetched: Settled<AzureIdentity> | undefined): Promise<AzureIdentity> {
    if (!prefetched) return this.deps.azure.identities.get(resourceId);
    if ('error' in prefetched) throw prefetched.error;
    return prefetched.value;
  }

  private async ensureIdentity(pid: PodIdentity, prefetched?: Settled<AzureIdentity>): Promise<{ identity: AzureIdentity; created?: boolean } | { failure: Cond; requeueAfterMs?: number; error?: unknown }> {
    const ns = pid.metadata.namespace ?? '';
    const name = pid.metadata.name ?? '';
    const existing = pid.spec.identity.existing;
    try {
      if (existing) {
        try {
          return { identity: await this.readIdentity(existing.resourceId, prefetched) };
        } catch (err) {
          if (err instanceof NotFoundError) return { failure: bad('IdentityNotFound', `identity ${existing.resourceId} does not exist`), requeueAfterMs: 60_000 };
          throw err;
        }
      }
      const id = this.managedIdentityId(pid);
      let current: AzureIdentity | undefined;
      try {
        current = await this.readIdentity(id, prefetched);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      if (current) {
        const t = current.tags;
        const sameOwner = t[TAG_MANAGED_BY] === MANAGED_BY && t[TAG_NAMESPACE] === ns && t[TAG_NAME] === name;
        if (!sameOwner) {
          const who = t[TAG_MANAGED_BY] === MANAGED_BY ? `PodIdentity ${t[TAG_NAMESPACE]}/${t[TAG_NAME]}` : 'something other than this operator';
          const message = `identity ${id} already exists and belongs to ${who}; refusing to take it over (use identity.existing to adopt it, or choose another name)`;
          if (pid.status?.conditions?.find((c) => c.type === CONDITION_IDENTITY_READY)?.reason !== 'IdentityOwnedByAnother') {
            this.deps.logger?.warn('refusing to take over an identity', { namespace: ns, name, resourceId: id, owner: who });
            await this.deps.writer.event(pid, 'Warning', 'IdentityOwnedByAnother', message);
          }
          return { failure: bad('IdentityOwnedByAnother', message) };
        }
      }
      const m = pid.spec.identity.managed ?? {};
      const tags = { ...(m.tags ?? {}), [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: ns, [TAG_NAME]: name, [TAG_UID]: pid.metadata.uid ?? '' };
      const location = m.location ?? current?.location ?? this.deps.settings.location;
      const upToDate = current && current.location.toLowerCase() === location.toLowerCase() && Object.keys(tags).length === Object.keys(current.tags).length && Object.entries(tags).every(([k, v]) => current.tags[k] === v);
      if (current && upToDate) return { identity: current };
      const identity = await this.deps.azure.identities.ensure(id, location, tags);
      this.deps.logger?.info(current ? 'managed identity updated' : 'managed identity created', { namespace: ns, name, clientId: identity.clientId, resourceId: id });
      return { identity, created: !current };
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      return { failure: bad('AzureError', errMessage(err)), error: err };
    }
  }

  private async convergeRoles(
    pid: PodIdentity,
    identity: AzureIdentity,
    fresh: boolean,
  ): Promise<{ statuses: RoleAssignmentStatus[]; condition: Cond; requeueAfterMs?: number; error?: unknown }> {
    const key = `${pid.metadata.namespace}/${pid.metadata.name}`;
    const log = this.deps.logger;
    const statuses: RoleAssignmentStatus[] = [];
    const desiredNames = new Set<string>();
    let pendingPrincipal = false;
    let error: unknown;
    for (const ra of pid.spec.roleAssignments ?? []) {
      let def: RoleDefinition;
      try {
        def = await this.deps.azure.roles.resolveRole(ra.role, ra.scope);
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
        const created = await this.deps.azure.roles.ensure(name, ra.scope, def.id, identity.principalId);
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
    // Remove assignments this operator made that left the spec. Never touch others' (their names differ).
    // A fresh principal has none but those just made.
    try {
      const existing = fresh ? [] : await this.deps.azure.roles.listForPrincipal(identity.principalId);
      for (const ra of existing) {
        if (!isOurAssignment(ra) || desiredNames.has(ra.name.toLowerCase())) continue;
        await this.deps.azure.roles.delete(ra.scope, ra.name);
        log?.info('role assignment removed', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: identity.clientId, roleDefinitionId: ra.roleDefinitionId, scope: ra.scope });
        await this.deps.writer.event(pid, 'Normal', 'RoleAssignmentRemoved', `removed ${ra.roleDefinitionId} at ${ra.scope}`);
      }
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      error ??= err;
    }

    let requeueAfterMs: number | undefined;
    if (pendingPrincipal) {
      const n = (this.principalAttempts.get(key) ?? 0) + 1;
      this.principalAttempts.set(key, n);
      requeueAfterMs = Math.min(2000 * 2 ** (n - 1), 60_000);
    } else this.principalAttempts.delete(key);

    const failed = statuses.filter((s) => s.state === 'Failed');
    const condition: Cond = failed.length
      ? bad(failed.some((s) => /does not exist/.test(s.message ?? '')) ? 'RoleNotFound' : 'AzureError', failed.map((s) => `${s.role} at ${s.scope}: ${s.message}`).join('; '))
      : pendingPrincipal
        ? bad('PrincipalNotReplicated', 'waiting for the new identity to replicate in Azure AD before assigning roles')
        : ok('RolesAssigned', statuses.length ? `${statuses.length} role assignment(s) in place` : 'no role assignments requested');
    return { statuses, condition, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}), ...(error ? { error } : {}) };
  }

  private async convergeCredentials(pid: PodIdentity, identity: AzureIdentity, fresh: boolean): Promise<{ statuses: FederatedCredentialStatus[]; condition: Cond; error?: unknown }> {
    const ns = pid.metadata.namespace ?? '';
    const log = this.deps.logger;
    const serviceAccounts = this.desiredServiceAccounts(pid);
    let issuer: string;
    try {
      issuer = await this.resolveIssuer();
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      return { statuses: pid.status?.federatedCredentials ?? [], condition: bad('IssuerUnknown', errMessage(err)), error: err };
    }
    const desired = serviceAccounts.map((sa) => {
      const subject = serviceAccountSubject(ns, sa);
      return { name: federatedCredentialName(subject), issuer, subject, audiences: [TOKEN_EXCHANGE_AUDIENCE] };
    });
    try {
      const existing = fresh ? [] : await this.deps.azure.federatedCredentials.list(identity.id);
      const foreign = existing.filter((f) => !isOurCredential(ns, f));
      if (desired.length + foreign.length > MAX_FEDERATED_CREDENTIALS) {
        // A clear condition, no retry storm: this only changes when the spec or the pods do.
        const message = `${desired.length} service accounts need federated credentials, but an identity holds at most ${MAX_FEDERATED_CREDENTIALS}${foreign.length ? ` (${foreign.length} are not managed by this PodIdentity)` : ''}`;
        await this.deps.writer.event(pid, 'Warning', 'LimitExceeded', message);
        return { statuses: pid.status?.federatedCredentials ?? [], condition: bad('LimitExceeded', message) };
      }
      // Removals first, so a swap never hits the limit.
      for (const f of existing) {
        if (!isOurCredential(ns, f) || desired.some((d) => d.name === f.name)) continue;
        await this.deps.azure.federatedCredentials.delete(identity.id, f.name);
        log?.info('federated credential removed', { namespace: ns, name: pid.metadata.name, clientId: identity.clientId, subject: f.subject });
      }
      for (const d of desired) {
        const have = existing.find((f) => f.name === d.name);
        if (have && have.issuer === d.issuer && have.subject === d.subject && have.audiences.length === 1 && have.audiences[0] === TOKEN_EXCHANGE_AUDIENCE) continue;
        await this.deps.azure.federatedCredentials.ensure(identity.id, d);
        log?.info('federated credential ensured', { namespace: ns, name: pid.metadata.name, clientId: identity.clientId, subject: d.subject });
      }
    } catch (err) {
      if (err instanceof ThrottledError) throw err;
      if (err instanceof LimitExceededError) return { statuses: pid.status?.federatedCredentials ?? [], condition: bad('LimitExceeded', errMessage(err)) };
      return { statuses: pid.status?.federatedCredentials ?? [], condition: bad('AzureError', errMessage(err)), error: err };
    }
    const statuses = desired.map((d) => ({ name: d.name, issuer: d.issuer, subject: d.subject }));
    return {
      statuses,
      condition: ok('CredentialsReady', statuses.length ? `federated credentials for service accounts ${serviceAccounts.join(', ')}` : 'no service accounts in use yet'),
    };
  }

  private async deleteOurCredentials(pid: PodIdentity, identityId: string): Promise<void> {
    const ns = pid.metadata.namespace ?? '';
    let existing;
    try {
      existing = await this.deps.azure.federatedCredentials.list(identityId);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
    for (const f of existing) {
      if (!isOurCredential(ns, f)) continue;
      await this.deps.azure.federatedCredentials.delete(identityId, f.name);
      this.deps.logger?.info('federated credential removed', { namespace: ns, name: pid.metadata.name, subject: f.subject });
    }
  }

  private async convergeNodes(key: string, pid: PodIdentity, identityId: string, verify: boolean): Promise<{ statuses: NodeAssignmentStatus[]; condition: Cond; requeueAfterMs?: number }> {
    const { scaleSets, unmapped } = this.desiredScaleSets(pid);
    const previous = (pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet);
    this.deps.batcher.setDemand({ key, identityId, scaleSets: [...scaleSets.values()].map((e) => e.id) }, { alsoFlush: previous.filter((p) => !scaleSets.has(normalizeId(p))), verify });
    const statuses: NodeAssignmentStatus[] = [];
    const problems: string[] = [];
    let pending = false;
    let limit = false;
    for (const e of scaleSets.values()) {
      const st = this.deps.batcher.state(e.id, identityId);
      const state = st.assigned && !st.pending ? 'Assigned' : st.limitExceeded || (st.error && !st.pending) ? 'Failed' : 'Pending';
      if (st.limitExceeded) limit = true;
      if (state === 'Pending') pending = true;
      if (st.error) problems.push(st.error);
      statuses.push({ scaleSet: e.id, nodes: [...e.nodes].sort(), state });
    }
    // Removals from scale sets no longer needed must finish too before we call it converged.
    for (const p of previous) if (!scaleSets.has(normalizeId(p)) && this.deps.batcher.state(p, identityId).pending) pending = true;
    if (unmapped.length) problems.push(`nodes without a scale-set providerID: ${unmapped.join(', ')}`);
    const window = this.deps.settings.batchWindowMs ?? 2000;
    let condition: Cond;
    if (limit) condition = bad('LimitExceeded', problems[0] ?? 'scale set identity limit reached');
    else if (problems.length && !pending) condition = bad(unmapped.length ? 'NodeNotOnScaleSet' : 'AzureError', problems.join('; '));
    else if (pending) condition = bad('Pending', `assigning the identity to ${statuses.length} scale set(s)${problems.length ? `: ${problems.join('; ')}` : ''}`);
    else condition = ok('NodesAssigned', statuses.length ? `assigned on ${statuses.length} scale set(s)` : 'no selected pods are running on nodes');
    // The batcher enqueues us when it settles; the requeue is a safety net only.
    return { statuses, condition, ...(pending ? { requeueAfterMs: window * 5 + 5000 } : {}) };
  }

  private async withdrawNodes(key: string, pid: PodIdentity, identityId: string, fresh: boolean): Promise<void> {
    const previous = (pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet);
    // A fresh identity was never ours to add anywhere (the next periodic full sync reads the record again).
    const owned = fresh ? [] : await this.deps.ownership.scaleSetsWith(identityId);
    const toFlush = [...previous, ...owned].filter((s) => !this.deps.batcher.knows(s) || this.deps.batcher.state(s, identityId).assigned);
    if (toFlush.length) this.deps.batcher.setDemand({ key, identityId, scaleSets: [] }, { alsoFlush: toFlush });
  }

  /** Under a policy violation: no Azure writes except taking away what policy no longer allows. */
  private async revokeDenied(key: string, pid: PodIdentity, decision: PolicyDecision): Promise<void> {
    const identityDenied = decision.violations.some((v) => v.startsWith('identity') || v.startsWith('mode'));
    const identityId = pid.status?.resourceId;
    if (identityDenied && identityId) {
      // The identity (or its mode) is no longer allowed: its federated credentials would still let the service
      // accounts exchange tokens with Azure AD directly, and scale sets would still carry it, so both go.
      await this.deleteOurCredentials(pid, identityId);
      const carrying = (pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet).filter((s) => {
        const state = this.deps.batcher.state(s, identityId);
        return state.assigned || state.pending;
      });
      if (carrying.length) this.deps.batcher.setDemand({ key, identityId, scaleSets: [] }, { alsoFlush: carrying });
    }
    const principalId = pid.status?.principalId;
    if (!principalId) return;
    const allowedNames = new Set<string>();
    if (!identityDenied) {
      for (const [i, ra] of (pid.spec.roleAssignments ?? []).entries()) {
        if (decision.deniedRoles.includes(i)) continue;
        const recorded = pid.status?.roleAssignments?.find((s) => s.role === ra.role && s.scope === ra.scope && s.roleDefinitionId);
        if (recorded?.roleDefinitionId) allowedNames.add(roleAssignmentName(principalId, recorded.roleDefinitionId, ra.scope));
        else return; // cannot tell which assignment is still allowed without resolving: leave all (no writes)
      }
    }
    const existing = await this.deps.azure.roles.listForPrincipal(principalId);
    for (const ra of existing) {
      if (!isOurAssignment(ra) || allowedNames.has(ra.name.toLowerCase())) continue;
      await this.deps.azure.roles.delete(ra.scope, ra.name);
      this.deps.logger?.info('role assignment revoked by policy', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: pid.status?.clientId, scope: ra.scope, roleDefinitionId: ra.roleDefinitionId });
      await this.deps.writer.event(pid, 'Warning', 'RoleAssignmentRevoked', `policy no longer allows ${ra.roleDefinitionId} at ${ra.scope}; removed`);
    }
  }

  // ---------------------------------------------------------------- status

  private async writeStatus(pid: PodIdentity, next: PodIdentityStatus, conds: Map<string, Cond>, mode: Mode, readyOverride?: Cond): Promise<void> {
    const generation = pid.metadata.generation;
    const now = (this.deps.now ?? (() => new Date()))();
    const modeCond = mode === 'Node' ? CONDITION_NODES_ASSIGNED : CONDITION_CREDENTIALS_READY;
    const order = [CONDITION_IDENTITY_READY, CONDITION_ROLES_ASSIGNED, modeCond];
    let ready: Cond = readyOverride ?? ok('Ready', 'identity, role assignments and ' + (mode === 'Node' ? 'node assignments' : 'federated credentials') + ' are in place');
    if (!readyOverride) {
      const firstBad = order.map((t) => [t, conds.get(t)] as const).find(([, c]) => !c || c.status !== 'True');
      if (firstBad) ready = bad(firstBad[1]?.reason ?? 'Reconciling', `${firstBad[0]}: ${firstBad[1]?.message ?? 'not yet reconciled'}`);
    }
    // Keep only this mode's conditions: a mode switch drops the other one.
    let conditions: Condition[] = (pid.status?.conditions ?? []).filter((c) => [CONDITION_READY, ...order].includes(c.type));
    conditions = setCondition(conditions, { type: CONDITION_READY, ...ready }, generation, now);
    for (const t of order) {
      const c = conds.get(t);
      if (c) conditions = setCondition(conditions, { type: t, ...c }, generation, now);
    }
    const status: PodIdentityStatus = { ...next, observedGeneration: generation, conditions };
    const before = pid.status ?? {};
    if (JSON.stringify(normalizeStatus(before)) === JSON.stringify(normalizeStatus(status))) return;
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(before)) if (!(k in status)) patch[k] = null; // merge patch: null removes
    const rv = await this.deps.writer.patchStatus(pid, patch);
    // A patch the server found to change nothing keeps the version: then no watch event will follow.
    if (rv && rv !== pid.metadata.resourceVersion) this.noteWrite(`${pid.metadata.namespace}/${pid.metadata.name}`, pid);
    const wasReady = before.conditions?.find((c) => c.type === CONDITION_READY);
    if (wasReady?.status !== ready.status || wasReady?.reason !== ready.reason) {
      this.deps.logger?.info('PodIdentity Ready changed', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: status.clientId, ready: ready.status, reason: ready.reason });
      if (ready.status === 'True') await this.deps.writer.event(pid, 'Normal', 'Ready', ready.message);
      else if (ready.reason !== 'PolicyDenied' && ready.reason !== 'InvalidSpec' && ready.reason !== 'Pending') await this.deps.writer.event(pid, 'Warning', ready.reason, ready.message);
    }
  }

  // ---------------------------------------------------------------- deletion

  private async finalize(key: string, pid: PodIdentity): Promise<ReconcileResult> {
    if (!pid.metadata.finalizers?.includes(FINALIZER)) return;
    const ns = pid.metadata.namespace ?? '';
    const name = pid.metadata.name ?? '';
    const identityId = pid.status?.resourceId ?? this.identityIdOf(pid);
    const log = this.deps.logger;
    if (pid.spec.deletionPolicy === 'Retain') {
      // Leave Azure alone, including scale sets: stop counting their identity as ours so no flush removes it.
      for (const ss of await this.deps.ownership.scaleSetsWith(identityId)) {
        const owned = await this.deps.ownership.get(ss);
        await this.deps.ownership.set(ss, owned.filter((o) => normalizeId(o) !== normalizeId(identityId)));
      }
      log?.info('PodIdentity deleted; Azure resources retained', { namespace: ns, name, clientId: pid.status?.clientId });
    } else {
      let identity: AzureIdentity | undefined;
      try {
        identity = await this.deps.azure.identities.get(identityId);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      // 1. federated credentials
      if (identity) await this.deleteOurCredentials(pid, identity.id);
      // 2. role assignments (they outlive a deleted principal in Azure, so use the recorded principal too)
      const principalId = identity?.principalId ?? pid.status?.principalId;
      if (principalId) {
        for (const ra of await this.deps.azure.roles.listForPrincipal(principalId)) {
          if (!isOurAssignment(ra)) continue;
          await this.deps.azure.roles.delete(ra.scope, ra.name);
          log?.info('role assignment removed', { namespace: ns, name, clientId: identity?.clientId ?? pid.status?.clientId, scope: ra.scope });
        }
      }
      // 3. scale-set assignments, through the batcher (one PATCH per scale set)
      const scaleSets = new Map<string, string>();
      for (const s of [...(pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet), ...(await this.deps.ownership.scaleSetsWith(identityId))]) scaleSets.set(normalizeId(s), s);
      const notRemoved = [...scaleSets.values()].filter((s) => {
        const st = this.deps.batcher.state(s, identityId);
        return st.pending || st.assigned;
      });
      if (notRemoved.length) {
        const unscheduled = notRemoved.filter((s) => !this.deps.batcher.state(s, identityId).pending || !this.deps.batcher.knows(s));
        this.deps.batcher.setDemand({ key, identityId, scaleSets: [] }, { alsoFlush: unscheduled });
        return { requeueAfterMs: (this.deps.settings.batchWindowMs ?? 2000) * 5 + 5000 };
      }
      // 4. the identity, only if this operator created it for this PodIdentity
      if (identity && pid.spec.identity.managed && identity.tags[TAG_MANAGED_BY] === MANAGED_BY && identity.tags[TAG_NAMESPACE] === ns && identity.tags[TAG_NAME] === name) {
        await this.deps.azure.identities.delete(identity.id);
        log?.info('managed identity deleted', { namespace: ns, name, clientId: identity.clientId, resourceId: identity.id });
      }
    }
    await this.deps.writer.removeFinalizer(pid, FINALIZER);
    this.forget(key);
    return;
  }
}

type Settled<T> = { value: T } | { error: unknown };

/** Never rejects: a read started alongside a write is awaited (and its failure seen) only if it is used. */
function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then((value) => ({ value }), (error: unknown) => ({ error }));
}

/** Status without volatile ordering differences, for change detection. */
function normalizeStatus(s: PodIdentityStatus): unknown {
  const conditions = [...(s.conditions ?? [])].sort((a, b) => a.type.localeCompare(b.type));
  const keys = Object.keys(s).filter((k) => (s as Record<string, unknown>)[k] !== undefined).sort();
  return keys.map((k) => [k, k === 'conditions' ? conditions : (s as Record<string, unknown>)[k]]);
}

