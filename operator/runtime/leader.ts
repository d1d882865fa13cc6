import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';
import { sleep } from '../../lib/k8s/backoff.js';
import { isConflict, isNotFound } from '../k8s/objects.js';

export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  /** Unique per process (e.g. `${hostname}_${random}`). */
  identity: string;
  /** How long a lease stays valid without renewal; a new leader takes over after this. Default 15 s. */
  leaseDurationMs?: number;
  /** The leader gives up if it could not renew for this long. Must be < leaseDurationMs. Default 10 s. */
  renewDeadlineMs?: number;
  /** Pause between acquire/renew attempts. Default 2 s. */
  retryPeriodMs?: number;
  /**
   * Runs while this process leads. `signal` aborts when leadership is lost or on shutdown; the returned
   * promise should settle once in-flight work has stopped. The lease is renewed until it settles and
   * only then released.
   */
  onStartedLeading: (signal: AbortSignal) => Promise<void> | void;
  onStoppedLeading?: () => void;
  /** Called whenever the observed holder changes ('' when nobody holds the lease). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
  now?: () => number;
}

export type LeadershipState = 'unknown' | 'leader' | 'follower';

/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: a lease is free when its holder
 * is empty or it has not changed for leaseDuration as observed on this process's own clock (so clock skew
 * between replicas doesn't matter); every write is a replace carrying the read's resourceVersion, so two
 * candidates can never both win. Losing the lease aborts the leader's signal and returns to candidacy —
 * no process exit, no crash loop.
 */
export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  private observedResourceVersion?: string;
  private observedAt = 0;
  private observedHolder?: string;
  private leading = false;
  private known = false;

  constructor(private readonly opts: LeaderElectorOptions) {
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.now = opts.now ?? Date.now;
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new Error('renewDeadlineMs must be less than leaseDurationMs');
    if (this.retryPeriodMs >= this.renewDeadlineMs) throw new Error('retryPeriodMs must be less than renewDeadlineMs');
  }

  /** True once the lease has been read at least once (this process knows whether it leads). */
  leadershipKnown(): boolean {
    return this.known;
  }

  state(): LeadershipState {
    return !this.known ? 'unknown' : this.leading ? 'leader' : 'follower';
  }

  /**
   * Campaigns until `signal` aborts. Each time it wins it runs `onStartedLeading`; when it loses, it campaigns
   * again. On abort while leading it waits for the leading work to settle (renewing meanwhile) and then
   * releases the lease so a successor takes over at once.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!(await this.acquire(signal))) return;
      await this.lead(signal);
    }
  }

  private async acquire(signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      try {
        if (await this.tryAcquireOrRenew()) return true;
      } catch (err) {
        this.opts.logger?.warn('leader election: lease read/write failed', { lease: this.leaseName, err });
      }
      await sleep(this.jittered(this.retryPeriodMs), signal);
    }
    return false;
  }

  private async lead(signal: AbortSignal): Promise<void> {
    const leadingCtl = new AbortController();
    this.leading = true;
    this.opts.logger?.info('leader election: started leading', { lease: this.leaseName, identity: this.opts.identity });
    let settled = false;
    const work = (async () => {
      try {
        await this.opts.onStartedLeading(leadingCtl.signal);
      } catch (err) {
        this.opts.logger?.error('leader election: leading work failed', { err });
      } finally {
        settled = true;
      }
    })();
    let lastRenew = this.now();
    let lost = false;
    while (!settled || !signal.aborted) {
      if (signal.aborted && !leadingCtl.signal.aborted) leadingCtl.abort(new Error('shutting down'));
      if (settled && !signal.aborted) {
        // The leading work ended on its own: step down so someone else can lead.
        break;
      }
      await Promise.race([sleep(this.retryPeriodMs, signal.aborted ? undefined : signal), work]);
      if (settled && signal.aborted) break;
      try {
        if (await this.tryAcquireOrRenew()) {
          lastRenew = this.now();
          continue;
        }
        // Someone else holds a valid lease: lost for sure. Otherwise (a write conflict) retry until the deadline.
        lost = (this.observedHolder ?? '') !== this.opts.identity || this.now() - lastRenew > this.renewDeadlineMs;
      } catch (err) {
        this.opts.logger?.warn('leader election: renew failed', { lease: this.leaseName, err });
        lost = this.now() - lastRenew > this.renewDeadlineMs;
      }
      if (lost) break;
    }
    this.leading = false;
    if (!leadingCtl.signal.aborted) leadingCtl.abort(new Error(lost ? 'leadership lost' : 'stepped down'));
    this.opts.logger?.warn('leader election: stopped leading', { lease: this.leaseName, lost });
    this.opts.onStoppedLeading?.();
    await work;
    if (!lost) await this.release();
  }

  /**
   * Gives the lease up (holder emptied) if this process holds it, so a successor acquires it at once.
   * Safe to call at any time; errors are logged, not thrown.
   */
  async release(): Promise<void> {
    try {
      const lease = await this.opts.api.readNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace });
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime(this.now()) };
      await this.opts.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: lease });
      this.opts.logger?.info('leader election: released lease', { lease: this.leaseName });
    } catch (err) {
      this.opts.logger?.warn('leader election: release failed', { lease: this.leaseName, err });
    }
  }

  /** One attempt: true if this process holds the lease afterwards. Throws on API errors other than conflicts. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, name, namespace, identity } = this.opts;
    const now = this.now();
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.spec(undefined, now) } });
        this.observe(identity, undefined, now);
        return true;
      } catch (createErr) {
        if (isConflict(createErr)) return false; // someone else created it first
        throw createErr;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    if (lease.metadata?.resourceVersion !== this.observedResourceVersion) this.observe(holder, lease.metadata?.resourceVersion, now);
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (holder && holder !== identity && this.observedAt + durationMs > now) return false;
    lease.spec = this.spec(lease, now);
    try {
      const updated = await api.replaceNamespacedLease({ name, namespace, body: lease });
      this.observe(identity, updated.metadata?.resourceVersion, now);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  private spec(current: V1Lease | undefined, now: number): V1Lease['spec'] {
    const held = current?.spec?.holderIdentity === this.opts.identity;
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: held && current?.spec?.acquireTime ? current.spec.acquireTime : new V1MicroTime(now),
      renewTime: new V1MicroTime(now),
      leaseTransitions: held ? (current?.spec?.leaseTransitions ?? 0) : (current?.spec?.leaseTransitions ?? -1) + 1,
    };
  }

  private observe(holder: string, resourceVersion: string | undefined, at: number): void {
    this.known = true;
    this.observedResourceVersion = resourceVersion;
    this.observedAt = at;
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      try {
        this.opts.onNewLeader?.(holder);
      } catch {}
    }
  }

  private jittered(ms: number): number {
    return Math.round(ms * (1 + Math.random() * 0.2));
  }

  private get leaseName(): string {
    return `${this.opts.namespace}/${this.opts.name}`;
  }
}
