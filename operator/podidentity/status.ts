import {
  CONDITION_CREDENTIAL_PROPAGATED,
  CONDITION_CREDENTIALS_READY,
  CONDITION_IDENTITY_READY,
  CONDITION_NODES_ASSIGNED,
  CONDITION_READY,
  CONDITION_ROLES_ASSIGNED,
  type Condition,
  type ConditionStatus,
  type Mode,
  type PodIdentity,
  type PodIdentityStatus,
} from '../../lib/api/types.js';
import { setCondition } from '../k8s/conditions.js';
import type { ReconcilerDeps } from './deps.js';

export interface Cond {
  status: ConditionStatus;
  reason: string;
  message: string;
}

export const ok = (reason: string, message: string): Cond => ({ status: 'True', reason, message });
export const bad = (reason: string, message: string): Cond => ({ status: 'False', reason, message });
export const errMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The condition type of the mode step. */
export const modeCondition = (mode: Mode): string => (mode === 'Node' ? CONDITION_NODES_ASSIGNED : CONDITION_CREDENTIALS_READY);

export const conditionOf = (pid: PodIdentity, type: string): Condition | undefined => pid.status?.conditions?.find((c) => c.type === type);

/**
 * Writes status once per reconcile and only when it changed, and remembers the resourceVersions our own writes
 * replaced: a cached copy still at one of them predates our last write, whose watch event is on its way and
 * brings the key back; acting on it could repeat Azure writes.
 */
export class StatusWriter {
  private readonly superseded = new Map<string, Set<string>>();

  constructor(private readonly deps: Pick<ReconcilerDeps, 'writer' | 'logger' | 'now'>) {}

  /** Whether `pid` is a cached copy older than our own last write. */
  isStale(key: string, pid: PodIdentity): boolean {
    if (this.superseded.get(key)?.has(pid.metadata.resourceVersion ?? '')) return true;
    this.superseded.delete(key);
    return false;
  }

  forget(key: string): void {
    this.superseded.delete(key);
  }

  /** Our write replaced `pid`'s resourceVersion. */
  noteWrite(key: string, pid: PodIdentity): void {
    const rv = pid.metadata.resourceVersion;
    if (!rv) return;
    let set = this.superseded.get(key);
    if (!set) this.superseded.set(key, (set = new Set()));
    set.add(rv);
  }

  async write(pid: PodIdentity, next: PodIdentityStatus, conds: Map<string, Cond>, mode: Mode, readyOverride?: Cond): Promise<void> {
    const generation = pid.metadata.generation;
    const now = this.deps.now();
    const order = [CONDITION_IDENTITY_READY, CONDITION_ROLES_ASSIGNED, modeCondition(mode)];
    let ready: Cond = readyOverride ?? ok('Ready', 'identity, role assignments and ' + (mode === 'Node' ? 'node assignments' : 'federated credentials') + ' are in place');
    if (!readyOverride) {
      const firstBad = order.map((t) => [t, conds.get(t)] as const).find(([, c]) => !c || c.status !== 'True');
      if (firstBad) ready = bad(firstBad[1]?.reason ?? 'Reconciling', `${firstBad[0]}: ${firstBad[1]?.message ?? 'not yet reconciled'}`);
    }
    // Keep only this mode's conditions: a mode switch drops the other one. Propagation is reported beside
    // Ready, never in it: Ready means the Azure resources are in place, which is what GitOps health waits for.
    const informational = mode === 'Federated' ? [CONDITION_CREDENTIAL_PROPAGATED] : [];
    let conditions: Condition[] = (pid.status?.conditions ?? []).filter((c) => [CONDITION_READY, ...order, ...informational].includes(c.type));
    conditions = setCondition(conditions, { type: CONDITION_READY, ...ready }, generation, now);
    for (const t of [...order, ...informational]) {
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
      if (ready.status === 'True') this.deps.writer.event(pid, 'Normal', 'Ready', ready.message);
      else if (ready.reason !== 'PolicyDenied' && ready.reason !== 'InvalidSpec' && ready.reason !== 'Pending') this.deps.writer.event(pid, 'Warning', ready.reason, ready.message);
    }
  }
}

/** Status without volatile ordering differences, for change detection. */
function normalizeStatus(s: PodIdentityStatus): unknown {
  const conditions = [...(s.conditions ?? [])].sort((a, b) => a.type.localeCompare(b.type));
  const keys = Object.keys(s).filter((k) => (s as Record<string, unknown>)[k] !== undefined).sort();
  return keys.map((k) => [k, k === 'conditions' ? conditions : (s as Record<string, unknown>)[k]]);
}
