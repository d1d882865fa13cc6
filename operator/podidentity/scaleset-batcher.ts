import { MAX_SCALE_SET_IDENTITIES } from '../../lib/api/types.js';
import type { Logger } from '../../lib/log.js';
import { LimitExceededError, ThrottledError } from '../azure/errors.js';
import { normalizeId } from '../azure/ids.js';
import type { ScaleSetClient } from '../azure/types.js';
import type { OperatorMetrics } from '../metrics.js';
import type { OwnershipStore } from './ownership.js';

/** What one PodIdentity needs: its identity on these scale sets. */
export interface Demand {
  key: string;
  identityId: string;
  scaleSets: string[];
}

export interface ScaleSetIdentityState {
  /** A flush that covers the latest demands has not finished yet. */
  pending: boolean;
  /** The identity is on the scale set (as of the last flush). */
  assigned: boolean;
  /** The last flush failed (retried by the batcher itself, except limits). */
  error?: string;
  limitExceeded?: boolean;
}

export interface ScaleSetBatcherOptions {
  scaleSets: ScaleSetClient;
  ownership: OwnershipStore;
  /** Demands arriving within this window share one PATCH per scale set. */
  windowMs: number;
  logger?: Logger;
  metrics?: Pick<OperatorMetrics, 'scaleSetPatches'>;
  /** Called after a scale set converged (or failed) with the PodIdentity keys that care about it (see also `onSettled`). */
  onSettled?: (keys: string[]) => void;
  /**
   * Demands of PodIdentities not (yet) registered since this process started, read from their recorded status.
   * After a restart they keep their identities until their own reconcile registers a real demand.
   */
  recordedDemands?: () => Demand[];
  maxBackoffMs?: number;
  /** False while this process may not write to Azure (not the leader): flushes wait. */
  canWrite?: () => boolean;
  now?: () => number;
}

interface ScaleSetEntry {
  id: string;
  timer?: NodeJS.Timeout;
  inFlight?: Promise<void>;
  /** Demands changed since the last flush started. */
  dirty: boolean;
  assigned: Set<string>;
  error?: string;
  limited: Set<string>;
  failures: number;
  /** PodIdentity keys to notify after the next flush. */
  interested: Set<string>;
  /** When Azure last answered a PATCH to this scale set: the next one is sent a full window after that. */
  lastPatchAt?: number;
}

/**
 * Converges scale-set identities with one PATCH per scale set per batch window, carrying all additions and
 * removals. PodIdentity reconciles only register demands; the batcher computes, per scale set, the union of
 * identities its bound pods need, adds what is missing, and removes only identities it recorded adding.
 */
export class ScaleSetBatcher {
  private readonly demands = new Map<string, Demand>();
  private readonly entries = new Map<string, ScaleSetEntry>();
  private stopped = false;
  private readonly settledListeners: ((keys: string[]) => void)[] = [];

  constructor(private readonly opts: ScaleSetBatcherOptions) {
    if (opts.onSettled) this.settledListeners.push(opts.onSettled);
  }

  /** Subscribes to settled scale sets: `listener` gets the PodIdentity keys that care about each one. */
  onSettled(listener: (keys: string[]) => void): void {
    this.settledListeners.push(listener);
  }

  /**
   * Records what PodIdentity `key` needs (an empty list withdraws it). Schedules a flush of every scale set
   * whose desired set changed, plus `alsoFlush` (e.g. scale sets from status or the ownership record) and, with
   * `verify`, all of them even if unchanged (drift repair on a full resync).
   */
  setDemand(demand: Demand, options: { alsoFlush?: string[]; verify?: boolean } = {}): void {
    const previous = this.demands.get(demand.key);
    const before = new Set((previous?.scaleSets ?? []).map(normalizeId));
    const after = new Set(demand.scaleSets.map(normalizeId));
    const sameIdentity = previous && normalizeId(previous.identityId) === normalizeId(demand.identityId);
    this.demands.set(demand.key, { ...demand, scaleSets: [...demand.scaleSets] });
    const touched = new Map<string, string>();
    for (const s of previous?.scaleSets ?? []) if (!after.has(normalizeId(s)) || !sameIdentity) touched.set(normalizeId(s), s);
    for (const s of demand.scaleSets) if (!before.has(normalizeId(s)) || !sameIdentity || options.verify) touched.set(normalizeId(s), s);
    for (const s of options.alsoFlush ?? []) touched.set(normalizeId(s), s);
    for (const s of [...demand.scaleSets, ...(options.alsoFlush ?? []), ...(previous?.scaleSets ?? [])]) this.entry(s).interested.add(demand.key);
    for (const s of touched.values()) this.schedule(s);
  }

  /** The identity's state on one scale set. */
  state(scaleSetId: string, identityId: string): ScaleSetIdentityState {
    const e = this.entries.get(normalizeId(scaleSetId));
    if (!e) return { pending: true, assigned: false };
    const id = normalizeId(identityId);
    return {
      pending: e.dirty || e.timer !== undefined || e.inFlight !== undefined,
      assigned: e.assigned.has(id),
      ...(e.error ? { error: e.error } : {}),
      ...(e.limited.has(id) ? { limitExceeded: true } : {}),
    };
  }

  /** Whether a PodIdentity other than `exceptKey` demands `identityId` on this scale set. */
  demandedByOthers(scaleSetId: string, identityId: string, exceptKey: string): boolean {
    const target = normalizeId(scaleSetId);
    const id = normalizeId(identityId);
    return this.allDemands().some((d) => d.key !== exceptKey && normalizeId(d.identityId) === id && d.scaleSets.some((s) => normalizeId(s) === target));
  }

  /** Whether this scale set has been scheduled or flushed by this process. */
  knows(scaleSetId: string): boolean {
    return this.entries.has(normalizeId(scaleSetId));
  }

  /** Waits for every scheduled flush (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.entries.values()].filter((e) => e.timer || e.inFlight);
      if (busy.length === 0) return;
      await Promise.all(busy.map((e) => e.inFlight ?? new Promise((r) => setTimeout(r, 5))));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
  }

  private entry(scaleSetId: string): ScaleSetEntry {
    const key = normalizeId(scaleSetId);
    let e = this.entries.get(key);
    if (!e) {
      e = { id: scaleSetId, dirty: false, assigned: new Set(), limited: new Set(), failures: 0, interested: new Set() };
      this.entries.set(key, e);
    }
    return e;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private schedule(scaleSetId: string, delayMs = this.opts.windowMs): void {
    if (this.stopped) return;
    const e = this.entry(scaleSetId);
    e.dirty = true;
    if (e.timer) return; // already in this window
    // At most one PATCH per scale set per window, whatever asks for the flush (a follow-up after an in-flight
    // flush, a retry): what arrives meanwhile waits for the end of the window and shares the next PATCH.
    if (e.lastPatchAt !== undefined) delayMs = Math.max(delayMs, e.lastPatchAt + this.opts.windowMs - this.now());
    e.timer = setTimeout(() => {
      e.timer = undefined;
      void this.flush(e);
    }, delayMs);
    e.timer.unref?.();
  }

  /** Registered demands, plus recorded ones of PodIdentities not registered since this process started. */
  private allDemands(): Demand[] {
    const registered = new Set(this.demands.keys());
    return [...this.demands.values(), ...(this.opts.recordedDemands?.() ?? []).filter((d) => !registered.has(d.key))];
  }

  private desiredFor(scaleSetId: string): Set<string> {
    const target = normalizeId(scaleSetId);
    const out = new Set<string>();
    for (const d of this.allDemands()) if (d.identityId && d.scaleSets.some((s) => normalizeId(s) === target)) out.add(d.identityId);
    return out;
  }

  private async flush(e: ScaleSetEntry): Promise<void> {
    if (this.opts.canWrite && !this.opts.canWrite()) {
      e.dirty = false; // the next leader recomputes everything from status and the ownership record
      return;
    }
    if (e.inFlight) {
      // One PATCH at a time per scale set: run again when the current one ends.
      await e.inFlight;
      if (!e.timer && e.dirty) this.schedule(e.id, 0);
      return;
    }
    if (e.lastPatchAt !== undefined && this.now() - e.lastPatchAt < this.opts.windowMs) {
      if (!e.timer) this.schedule(e.id, 0); // a timer set before the last PATCH was sent: wait out its window
      return;
    }
    e.dirty = false;
    const run = this.converge(e);
    e.inFlight = run;
    try {
      await run;
    } finally {
      e.inFlight = undefined;
      const keys = [...e.interested];
      e.interested.clear();
      for (const [key, d] of this.demands) if (d.scaleSets.some((s) => normalizeId(s) === normalizeId(e.id))) e.interested.add(key);
      for (const listener of this.settledListeners) listener(keys);
    }
  }

  private async converge(e: ScaleSetEntry): Promise<void> {
    const log = this.opts.logger;
    try {
      const desired = this.desiredFor(e.id);
      const desiredNorm = new Map([...desired].map((d) => [normalizeId(d), d]));
      const current = await this.opts.scaleSets.get(e.id);
      const currentNorm = new Set(current.userAssigned.map(normalizeId));
      const owned = await this.opts.ownership.get(e.id);
      const ownedNorm = new Map(owned.map((o) => [normalizeId(o), o]));
      let add = [...desiredNorm].filter(([n]) => !currentNorm.has(n)).map(([, id]) => id);
      const remove = current.userAssigned.filter((id) => ownedNorm.has(normalizeId(id)) && !desiredNorm.has(normalizeId(id)));
      e.limited.clear();
      const room = MAX_SCALE_SET_IDENTITIES - (current.userAssigned.length - remove.length);
      if (add.length > room) {
        const refused = add.slice(Math.max(0, room));
        add = add.slice(0, Math.max(0, room));
        for (const id of refused) e.limited.add(normalizeId(id));
        log?.warn('scale set identity limit reached', { scaleSet: e.id, limit: MAX_SCALE_SET_IDENTITIES, refused: refused.length });
      }
      // Identities we recorded but that are no longer on the scale set (someone removed them) are forgotten.
      const keep = [...ownedNorm].filter(([n]) => currentNorm.has(n) && desiredNorm.has(n)).map(([, id]) => id);
      let after = current.userAssigned;
      if (add.length || remove.length) {
        // Record intent before the PATCH: a crash after it can never leave an identity we added unowned.
        await this.opts.ownership.set(e.id, [...keep, ...remove, ...add]);
        // Times taken from Azure's answer, which comes after the PATCH reached Azure, so network jitter can never
        // bring two PATCHes closer than a window where Azure counts them.
        e.lastPatchAt = this.now();
        try {
          after = (await this.opts.scaleSets.patch(e.id, add, remove, () => (e.lastPatchAt = this.now()))).userAssigned;
          this.opts.metrics?.scaleSetPatches.inc({ result: 'success' });
        } catch (err) {
          e.lastPatchAt = this.now();
          this.opts.metrics?.scaleSetPatches.inc({ result: 'error' });
          throw err;
        }
        log?.info('scale set identities patched', { scaleSet: e.id, added: add, removed: remove });
      }
      const afterNorm = new Set(after.map(normalizeId));
      const nextOwned = [...keep, ...add].filter((id) => afterNorm.has(normalizeId(id)));
      if (nextOwned.length !== owned.length || nextOwned.some((id) => !ownedNorm.has(normalizeId(id)))) await this.opts.ownership.set(e.id, nextOwned);
      e.assigned = afterNorm;
      e.error = e.limited.size ? `scale set ${e.id} would exceed ${MAX_SCALE_SET_IDENTITIES} user-assigned identities` : undefined;
      e.failures = 0;
    } catch (err) {
      e.failures++;
      e.error = err instanceof Error ? err.message : String(err);
      if (err instanceof LimitExceededError) {
        for (const id of this.desiredFor(e.id)) if (!e.assigned.has(normalizeId(id))) e.limited.add(normalizeId(id));
        return;
      }
      const backoff = err instanceof ThrottledError ? err.retryAfterMs : Math.min(1000 * 2 ** (e.failures - 1), this.opts.maxBackoffMs ?? 5 * 60_000);
      log?.warn('scale set convergence failed; will retry', { scaleSet: e.id, err, retryInMs: backoff });
      this.schedule(e.id, backoff);
    }
  }
}
