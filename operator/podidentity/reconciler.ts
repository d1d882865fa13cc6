/**
 * The PodIdentity reconcile sequence: level-triggered and idempotent. Each step lives in its own module
 * (desired, identity, roles, credentials, scalesets, denial, finalize, status); this file only orders them:
 * policy → fast path → identity plan (reads) ∥ finalizer → identity → roles ∥ credentials or scale sets → status.
 */
import { CONDITION_CREDENTIAL_PROPAGATED, CONDITION_IDENTITY_READY, CONDITION_READY, CONDITION_ROLES_ASSIGNED, FINALIZER, type Mode, type PodIdentity, type PodIdentityStatus } from '../../lib/api/types.js';
import { abortable } from '../azure/abortable.js';
import { ThrottledError } from '../azure/errors.js';
import type { PolicyDecision } from '../policy/evaluate.js';
import { convergeCredentials, issuerSource, releaseCredentials, type IssuerSource } from './credentials.js';
import { applyDenial } from './denial.js';
import type { ReconcilerDeps, StepDeps } from './deps.js';
import { decide, isConverged, modeOf } from './desired.js';
import { finalize, releaseReplaced } from './finalize.js';
import { ensureIdentity, planIdentity } from './identity.js';
import { convergeRoles } from './roles.js';
import { convergeNodes, withdrawScaleSets } from './scalesets.js';
import { propagationOf } from './propagation.js';
import { bad, conditionOf, modeCondition, ok, StatusWriter, type Cond } from './status.js';

export type { ReconcilerDeps, ReconcilerSettings } from './deps.js';
export type ReconcileResult = { requeueAfterMs?: number } | void;

interface Outcome {
  condition: Cond;
  error?: unknown;
  requeueAfterMs?: number;
}

export class PodIdentityReconciler {
  private readonly lastFullSync = new Map<string, { generation: number; at: number }>();
  private readonly principalAttempts = new Map<string, number>();
  /** Per key: no Azure call before this time (the last 429's Retry-After). */
  private readonly throttledUntil = new Map<string, number>();
  private readonly status: StatusWriter;
  private readonly issuers: IssuerSource;

  constructor(private readonly deps: ReconcilerDeps) {
    this.status = new StatusWriter(deps);
    this.issuers = issuerSource(deps);
  }

  private ms = (): number => this.deps.now().getTime();

  /**
   * `releaseWorker` (see runtime/controller.ts) is called once the Azure calls are over, before the status
   * write: the worker's next key starts its Azure work while this one's status goes to the API server.
   */
  async reconcile(key: string, signal?: AbortSignal, releaseWorker?: () => void): Promise<ReconcileResult> {
    const pid = this.deps.view.podIdentity(key);
    if (!pid) return this.forget(key);
    if (this.status.isStale(key, pid)) return;
    // Events (our own status write, a pod change) re-enqueue a key at once; Retry-After must still hold.
    const waitMs = (this.throttledUntil.get(key) ?? 0) - this.ms();
    if (waitMs > 0) return { requeueAfterMs: waitMs };
    this.throttledUntil.delete(key);
    const d: StepDeps = { ...this.deps, azure: abortable(this.deps.azure, signal) };
    try {
      return pid.metadata.deletionTimestamp ? await this.finalize(d, key, pid) : await this.converge(d, key, pid, releaseWorker);
    } catch (err) {
      if (!(err instanceof ThrottledError)) throw err;
      // Honour Retry-After for this key only; other keys keep going.
      this.deps.logger?.warn('Azure throttled; requeueing after Retry-After', { key, operation: err.operation, retryAfterMs: err.retryAfterMs });
      this.throttledUntil.set(key, this.ms() + err.retryAfterMs);
      return { requeueAfterMs: err.retryAfterMs };
    }
  }

  private forget(key: string): void {
    for (const m of [this.lastFullSync, this.principalAttempts, this.throttledUntil]) m.delete(key);
    this.status.forget(key);
  }

  private async converge(d: StepDeps, key: string, cached: PodIdentity, releaseWorker?: () => void): Promise<ReconcileResult> {
    let pid = cached;
    const mode = modeOf(pid, d.settings);
    const generation = pid.metadata.generation ?? 0;
    const decision = await decide(d.view, d.settings, d.azure, pid);
    if (!decision.allowed) return this.deny(d, key, pid, mode, decision);
    // Fast path: converged for this generation, nothing derived from the caches changed, and Azure was checked
    // recently. Pod churn then costs no ARM calls.
    const last = this.lastFullSync.get(key);
    const periodic = !!last && last.generation === generation && this.ms() - last.at > (d.settings.fullSyncIntervalMs ?? 10 * 60_000);
    if (last && last.generation === generation && !periodic && isConverged(d.view, pid, mode)) return this.refreshPropagation(key, pid, mode);

    const conds = new Map<string, Cond>();
    const status: PodIdentityStatus = { ...(pid.status ?? {}), mode };
    // The plan only reads, so the finalizer (an API-server round trip) goes out beside it rather than after
    // it; both settle before the first Azure write. A refused plan may leave the finalizer on the object:
    // finalize then finds no identity recorded as this PodIdentity's, leaves Azure alone and removes it.
    const [planned, finalized] = await Promise.allSettled([planIdentity(d, pid), this.ensureFinalizer(d, key, pid)]);
    if (planned.status === 'rejected' || finalized.status === 'rejected') {
      const reasons = [planned, finalized].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      throw reasons.find((e) => e instanceof ThrottledError) ?? reasons[0];
    }
    const plan = planned.value;
    if (finalized.value === 'unknown') return; // new version unknown: the update event brings us back
    pid = finalized.value;
    if (plan.kind === 'refused') return this.identityNotReady(pid, status, conds, mode, plan);
    const replaced = await releaseReplaced(d, pid, plan.kind === 'use' ? plan.identity.id : plan.resourceId);
    if (replaced) return replaced;
    const ensured = await ensureIdentity(d, pid, plan);
    if ('failure' in ensured) return this.identityNotReady(pid, status, conds, mode, ensured);
    const identity = ensured.identity;
    const owned = plan.kind === 'create' || plan.owned;
    const fresh = ensured.created === true; // a new principal: nothing attached yet, nothing to list
    Object.assign(status, { clientId: identity.clientId, principalId: identity.principalId, tenantId: identity.tenantId, resourceId: identity.id });
    conds.set(CONDITION_IDENTITY_READY, ok(pid.spec.identity.existing ? 'IdentityFound' : 'IdentityReady', `identity ${identity.name} (clientId ${identity.clientId})`));
    const identityChanged = pid.status?.clientId !== identity.clientId;
    // A created identity was logged as such by ensureIdentity.
    if (identityChanged && !fresh) d.logger?.info(pid.spec.identity.existing ? 'existing identity adopted' : 'managed identity ready', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: identity.clientId, resourceId: identity.id });

    // Roles and the mode step need only the identity: run them together, and let both settle before going on.
    const modeStep = async (): Promise<Outcome> => {
      if (mode === 'Federated') {
        await withdrawScaleSets(d, pid, identity.id, { ownershipRecord: !fresh });
        const fic = await convergeCredentials(d, this.issuers, pid, identity, fresh);
        delete status.nodeAssignments;
        status.federatedCredentials = fic.statuses;
        return fic;
      }
      if (!fresh && pid.status?.federatedCredentials?.length) await releaseCredentials(d, pid, identity.id);
      const nodes = convergeNodes(d, pid, identity.id, periodic);
      delete status.federatedCredentials;
      status.nodeAssignments = nodes.statuses;
      return nodes;
    };
    const [rolesDone, modeDone] = await Promise.allSettled([convergeRoles(d, pid, identity, { fresh, owned }), modeStep()]);
    if (rolesDone.status === 'rejected' || modeDone.status === 'rejected') {
      const reasons = [rolesDone, modeDone].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      throw reasons.find((e) => e instanceof ThrottledError) ?? reasons[0];
    }
    // No Azure call follows: only the status write, which need not hold a worker from the next key's Azure work.
    releaseWorker?.();
    const roles = rolesDone.value;
    status.roleAssignments = roles.statuses;
    conds.set(CONDITION_ROLES_ASSIGNED, roles.condition);
    conds.set(modeCondition(mode), modeDone.value.condition);
    const requeues = [roles.pendingPrincipal ? this.principalBackoff(key) : undefined, modeDone.value.requeueAfterMs].filter((n): n is number => n !== undefined);
    if (!roles.pendingPrincipal) this.principalAttempts.delete(key);
    const retryError = roles.error ?? modeDone.value.error;
    const allTrue = [...conds.values()].every((c) => c.status === 'True');
    if (allTrue && !retryError && requeues.length === 0) this.lastFullSync.set(key, { generation, at: this.ms() });
    else this.lastFullSync.delete(key);
    // The Ready event this write records says as much; an Event is an API-server write, so one, not two.
    const readyNow = allTrue && conditionOf(pid, CONDITION_READY)?.status !== 'True';
    if (identityChanged && !readyNow) d.writer.event(pid, 'Normal', 'IdentityReady', `identity ${identity.id} clientId ${identity.clientId}`);
    // Informational, after the convergence check: propagation is Azure AD's pace, not something to repair.
    this.propagation(key, pid, status, conds, mode);
    await this.status.write(pid, status, conds, mode);
    if (retryError) throw retryError;
    return requeues.length ? { requeueAfterMs: Math.min(...requeues) } : undefined;
  }

  /**
   * Puts the finalizer on the object (the patch carries our resourceVersion: a conflict throws and the key is
   * retried). Resolves with the object as it now is, or 'unknown' when the server did not say which version
   * that is.
   */
  private async ensureFinalizer(d: StepDeps, key: string, pid: PodIdentity): Promise<PodIdentity | 'unknown'> {
    if (pid.metadata.finalizers?.includes(FINALIZER)) return pid;
    const rv = await d.writer.addFinalizer(pid, FINALIZER);
    if (!rv || rv === pid.metadata.resourceVersion) return 'unknown';
    this.status.noteWrite(key, pid);
    return { ...pid, metadata: { ...pid.metadata, finalizers: [...(pid.metadata.finalizers ?? []), FINALIZER], resourceVersion: rv } };
  }

  /**
   * Sets FederatedCredentialPropagated and firstSuccessfulExchange (Federated mode) from the recorded
   * credentials and the agents' FirstTokenExchange Events. No timer of its own: an Event brings the key back,
   * and the informer's resync (as long as the window) moves a credential nobody used past it.
   */
  private propagation(key: string, pid: PodIdentity, status: PodIdentityStatus, conds: Map<string, Cond>, mode: Mode): void {
    if (mode !== 'Federated') {
      delete status.firstSuccessfulExchange;
      return;
    }
    const now = this.ms();
    const credentials = status.federatedCredentials ?? [];
    const was = conditionOf(pid, CONDITION_CREDENTIAL_PROPAGATED);
    const recorded = { ...(pid.status?.firstSuccessfulExchange ? { first: pid.status.firstSuccessfulExchange } : {}), ...(was?.status === 'True' ? { propagatedSince: was.lastTransitionTime } : {}) };
    const found = propagationOf(pid.metadata.uid ?? '', credentials, this.deps.view.exchangeReports?.(key) ?? [], now, recorded);
    if (found.condition) conds.set(CONDITION_CREDENTIAL_PROPAGATED, found.condition);
    if (found.first) status.firstSuccessfulExchange = found.first;
    else delete status.firstSuccessfulExchange;
  }

  /** The fast path's one status duty: an agent's first exchange (or the window passing) changes only this. */
  private async refreshPropagation(key: string, pid: PodIdentity, mode: Mode): Promise<ReconcileResult> {
    if (mode !== 'Federated') return;
    const status: PodIdentityStatus = { ...(pid.status ?? {}) };
    const conds = new Map<string, Cond>();
    for (const c of pid.status?.conditions ?? []) conds.set(c.type, { status: c.status, reason: c.reason, message: c.message });
    this.propagation(key, pid, status, conds, mode);
    const before = conditionOf(pid, CONDITION_CREDENTIAL_PROPAGATED);
    const after = conds.get(CONDITION_CREDENTIAL_PROPAGATED);
    const same = before?.status === after?.status && before?.reason === after?.reason && before?.message === after?.message;
    if (!same || JSON.stringify(pid.status?.firstSuccessfulExchange) !== JSON.stringify(status.firstSuccessfulExchange)) await this.status.write(pid, status, conds, mode);
  }

  private principalBackoff(key: string): number {
    const n = (this.principalAttempts.get(key) ?? 0) + 1;
    this.principalAttempts.set(key, n);
    return Math.min(2000 * 2 ** (n - 1), 60_000);
  }

  private async identityNotReady(pid: PodIdentity, status: PodIdentityStatus, conds: Map<string, Cond>, mode: Mode, failure: { failure: Cond; error?: unknown; requeueAfterMs?: number }): Promise<ReconcileResult> {
    const waiting = bad('IdentityNotReady', 'waiting for the identity');
    conds.set(CONDITION_IDENTITY_READY, failure.failure);
    conds.set(CONDITION_ROLES_ASSIGNED, waiting);
    conds.set(modeCondition(mode), waiting);
    await this.status.write(pid, status, conds, mode);
    if (failure.error) throw failure.error;
    return failure.requeueAfterMs !== undefined ? { requeueAfterMs: failure.requeueAfterMs } : undefined;
  }

  private async deny(d: StepDeps, key: string, pid: PodIdentity, mode: Mode, decision: PolicyDecision): Promise<ReconcileResult> {
    this.lastFullSync.delete(key);
    await applyDenial(d, this.status, pid, mode, decision);
  }

  private async finalize(d: StepDeps, key: string, pid: PodIdentity): Promise<ReconcileResult> {
    const result = await finalize(d, pid);
    if (result === 'done') return this.forget(key);
    return result;
  }
}
