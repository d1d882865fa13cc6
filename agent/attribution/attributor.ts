import { unavailable, type ImdsError } from '../imds/protocol.js';
import { matchesSelector } from '../../lib/api/selector.js';
import { effectiveSelector, type PodIdentity } from '../../lib/api/types.js';
import { ReadBudget, type ReadBudgetLimits } from './read-budget.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from './types.js';

export type Attribution =
  | { kind: 'pod'; pod: PodInfo }
  | { kind: 'unknown'; ip: string }
  | { kind: 'ambiguous'; ip: string; pods: PodInfo[] };

/** The calling end of a TCP connection: the socket itself (its identity pins the connection) and its peer. */
export interface Peer {
  readonly remoteAddress?: string | undefined;
}

/** `::ffff:10.0.0.5` (an IPv4 peer on a dual-stack socket) is `10.0.0.5`. */
export function normaliseAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
}

/** Why attribution refused to answer (the `reason` of the rejection metric; a fixed, small set). */
export type RefusalReason = 'verify_reads_per_source' | 'verify_reads_total' | 'verify_read_failed' | 'cache_behind';

export interface AttributorOptions {
  /** How long a connection may wait for the pod cache to catch up with the API server (and for a read budget). */
  catchUpMs: number;
  /** Bound on one verification read, even if the directory does not honour its own timeout. */
  readTimeoutMs: number;
  readBudget: ReadBudgetLimits;
  /** Each verification read, by what it found. */
  onRead?: (result: 'live' | 'gone' | 'error') => void;
  onRefused?: (reason: RefusalReason) => void;
}

export const DEFAULT_ATTRIBUTOR_OPTIONS: AttributorOptions = {
  catchUpMs: 1000,
  readTimeoutMs: 1000,
  readBudget: { perSource: 100, total: 500, windowMs: 1000 },
};

const DONE_WAITING = Symbol('attribution decided');

/** More live pods than this claiming one address is a reuse race gone wrong: refuse without reading each. */
const MAX_CANDIDATES = 4;
/** Pods found gone or finished are remembered (a UID never comes back), so their address costs no more reads. */
const MAX_REMEMBERED_GONE = 10_000;

interface PodRead {
  startedAt: number;
  result: Promise<PodInfo | undefined>;
  /** The answer is in: nobody waits on this read any more. */
  settled?: boolean;
}

interface ReadQueue {
  current?: PodRead;
  /** The read that starts when `current` ends; every caller that came too late for `current` shares it. */
  next?: Promise<PodRead>;
}

/**
 * Source IP → the one live pod on this node that owns it. Only the TCP peer address is an input: callers
 * pass the socket, never anything from the request headers.
 *
 * The pod cache (a watch) can lag the API server: a pod deleted a moment ago may still hold, in the cache,
 * the address that a new pod now uses. So the cache only nominates; each new connection is confirmed by a
 * consistent read of the nominated pod by name (one etcd key, so the cost does not grow with the cluster),
 * started after the connection opened: it must still exist with the same UID, hold the address, be on this
 * node and be Running or Pending. A new pod can only open a connection once it holds the address, so that
 * read cannot show a deleted previous owner as live. A nominee that fails the check makes the connection wait
 * (on the cache's next event for the address, bounded by `catchUpMs`) for the cache to nominate again; a read
 * that fails is a 503, never a fallback to the cache. The connection is then pinned to the pod; its later
 * requests use the cache, and read the pinned pod again whenever the cache disagrees.
 */
export class Attributor {
  private readonly reads = new Map<string, ReadQueue>();
  private readonly gone = new Set<string>();
  private readonly openedAt = new WeakMap<Peer, number>();
  private readonly pinned = new WeakMap<Peer, PodInfo>();
  private readonly selected = new WeakMap<PodInfo, { from: readonly PodIdentity[]; matching: readonly PodIdentity[] }>();
  private readonly budget: ReadBudget;
  private readonly options: AttributorOptions;

  constructor(
    private readonly nodeName: string,
    private readonly pods: PodDirectory,
    private readonly identities: IdentityDirectory,
    options: Partial<AttributorOptions> = {},
  ) {
    this.options = { ...DEFAULT_ATTRIBUTOR_OPTIONS, ...options };
    this.budget = new ReadBudget(this.options.readBudget);
  }

  /** Call from the server's 'connection' event; a socket never seen here counts as opened at its first request. */
  connectionOpened(peer: Peer): void {
    this.openedAt.set(peer, performance.now());
  }

  /**
   * A pod counts when it is on this node, Running or Pending, not hostNetwork, has claimed the IP and is not
   * being deleted. A terminating pod counts only for a connection already pinned to it (`pinnedUid`): its
   * address may be released, and taken by a pod whose status the kubelet has not written yet, before the API
   * server shows the terminating pod anything but Running, so a new connection from it proves nothing.
   */
  isLive(pod: PodInfo, ip: string, pinnedUid?: string): boolean {
    return (
      pod.nodeName === this.nodeName &&
      !pod.hostNetwork &&
      (pod.phase === 'Running' || pod.phase === 'Pending') &&
      pod.ips.includes(ip) &&
      (!pod.terminating || pod.uid === pinnedUid)
    );
  }

  async attribute(peer: Peer): Promise<Attribution> {
    const ip = normaliseAddress(peer.remoteAddress);
    if (!ip) return { kind: 'unknown', ip };
    const pin = this.pinned.get(peer);
    if (pin === undefined) {
      let opened = this.openedAt.get(peer);
      if (opened === undefined) this.openedAt.set(peer, (opened = performance.now()));
      const who = await this.verify(ip, opened);
      if (who.kind === 'pod') this.pinned.set(peer, who.pod);
      return who;
    }
    const known = this.pinnedAnswer(ip, pin);
    if (known) return known;
    // The cache has not caught up (or is broken): the API server decides, and only the pinned pod may pass.
    return this.verify(ip, performance.now(), pin);
  }

  /**
   * `attribute` for a connection already pinned, when the fresh pod cache decides it at once (the common case
   * of a keep-alive connection); undefined when it needs a read or a wait, or the connection is not pinned.
   * The same answer `attribute` gives then, without a promise.
   */
  attributeKnown(peer: Peer): Attribution | undefined {
    const pin = this.pinned.get(peer);
    if (pin === undefined) return undefined;
    const ip = normaliseAddress(peer.remoteAddress);
    return ip ? this.pinnedAnswer(ip, pin) : undefined;
  }

  private pinnedAnswer(ip: string, pin: PodInfo): Attribution | undefined {
    if (!this.pods.isFresh()) return undefined;
    const cached = this.liveCached(ip, pin.uid);
    if (cached.length === 1 && cached[0]!.uid === pin.uid) return { kind: 'pod', pod: cached[0]! };
    if (cached.length > 1 && cached.some((p) => p.uid === pin.uid)) return { kind: 'ambiguous', ip, pods: cached };
    return undefined;
  }

  /**
   * The PodIdentities in the pod's own namespace whose selector matches its labels. The same array while
   * neither the pod (a new PodInfo on every change) nor its namespace's PodIdentities change, so a pod's
   * requests do not each match every selector of its namespace.
   */
  identitiesFor(pod: PodInfo): readonly PodIdentity[] {
    const all = this.identities.inNamespace(pod.namespace);
    const known = this.selected.get(pod);
    if (known?.from === all) return known.matching;
    const matching = all.filter((pid) => !pid.metadata.deletionTimestamp && matchesSelector(effectiveSelector(pid), pod.labels));
    this.selected.set(pod, { from: all, matching });
    return matching;
  }

  private liveCached(ip: string, pinnedUid?: string): PodInfo[] {
    const all = this.pods.byIp(ip);
    // The common case (one pod per address) without a Map per request: the same answer.
    if (all.length <= 1) {
      const p = all[0];
      return p && this.isLive(p, ip, pinnedUid) && !this.gone.has(p.uid) ? [p] : [];
    }
    const byUid = new Map<string, PodInfo>();
    for (const p of all) if (this.isLive(p, ip, pinnedUid) && !this.gone.has(p.uid)) byUid.set(p.uid, p);
    return [...byUid.values()];
  }

  /**
   * The pods that hold `ip` now, each confirmed by a read that started at or after `notBefore`. With `pin`,
   * only that pod may be the answer (a pinned connection never changes pods).
   */
  private async verify(ip: string, notBefore: number, pin?: PodInfo): Promise<Attribution> {
    const deadline = performance.now() + this.options.catchUpMs;
    for (;;) {
      const fresh = this.pods.isFresh();
      const candidates = this.liveCached(ip, pin?.uid);
      if (pin && !candidates.some((p) => p.uid === pin.uid) && !this.gone.has(pin.uid)) candidates.push(pin);
      if (candidates.length > MAX_CANDIDATES) return { kind: 'ambiguous', ip, pods: candidates };
      const confirmed = (await Promise.all(candidates.map((c) => this.confirm(ip, c, notBefore, deadline, pin?.uid)))).filter((p): p is PodInfo => p !== undefined);
      if (pin) {
        const mine = confirmed.find((p) => p.uid === pin.uid);
        if (!mine) return { kind: 'unknown', ip };
        if (confirmed.length > 1) return { kind: 'ambiguous', ip, pods: confirmed };
        return { kind: 'pod', pod: mine };
      }
      if (confirmed.length > 1) return { kind: 'ambiguous', ip, pods: confirmed };
      if (confirmed.length === 1) return { kind: 'pod', pod: confirmed[0]! };
      // Nobody confirmed: the cache is behind the API server (a new owner not delivered yet), or no pod of
      // this node has the address. A nominee the watch delivered while the reads ran is read at once;
      // otherwise wait for the cache's next event for the address, within the bound. (Checked and then
      // listened for in one synchronous step, so no event falls between; listening only here spares every
      // connection that is confirmed an abort signal and a listener.)
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        // A cache that cannot be trusted (watch broken) cannot say "nobody": fail closed.
        if (!fresh) throw this.refuse('cache_behind', 'The pod identity agent is reconnecting to the API server and cannot attribute this request yet; retry shortly', 5);
        return { kind: 'unknown', ip };
      }
      const read = new Set(candidates.map((c) => c.uid));
      if (this.liveCached(ip).some((p) => !read.has(p.uid))) continue;
      const waiting = new AbortController();
      try {
        await Promise.race([this.pods.nextChange(ip, waiting.signal), new Promise<void>((r) => setTimeout(r, remaining).unref())]);
      } finally {
        // A reason of our own: abort() without one builds a DOMException (and its stack).
        waiting.abort(DONE_WAITING);
      }
    }
  }

  /** `candidate` as the API server has it now, if it is the same pod and live at `ip`; undefined otherwise. */
  private async confirm(ip: string, candidate: PodInfo, notBefore: number, deadline: number, pinnedUid?: string): Promise<PodInfo | undefined> {
    if (this.gone.has(candidate.uid)) return undefined;
    const read = await this.readAfter(ip, candidate, notBefore, deadline);
    let server: PodInfo | undefined;
    try {
      server = await read.result;
    } catch {
      throw this.refuse('verify_read_failed', `The pod identity agent could not confirm which pod holds ${ip} with the API server; retry shortly`, 1);
    }
    if (server && server.uid === candidate.uid && this.isLive(server, ip, pinnedUid)) {
      // The cached PodInfo when the read agrees with it on everything a decision reads, so what is derived
      // from the pod (its identities, the handler's cached decision) is found again on the next connection.
      return sameForDecisions(server, candidate) ? candidate : server;
    }
    // Remembered only for what never changes back. A live pod that merely no longer holds this address (its
    // sandbox was recreated with another) must stay attributable at its new one: otherwise whoever connects
    // from its old address before the watch catches up locks it out. A terminating pod stays readable for
    // the connections pinned to it.
    if (!server || server.uid !== candidate.uid || this.finished(server)) this.remember(candidate.uid);
    return undefined;
  }

  /** A read of `candidate` that started at or after `notBefore`: the one in flight if it qualifies, else the next. */
  private async readAfter(ip: string, candidate: PodInfo, notBefore: number, deadline: number): Promise<PodRead> {
    let queue = this.reads.get(candidate.uid);
    if (!queue) this.reads.set(candidate.uid, (queue = {}));
    const q = queue;
    if (q.current && q.current.startedAt >= notBefore) return q.current;
    if (!q.next) {
      const previous = q.current?.result.catch(() => undefined);
      q.next = (async () => {
        await previous;
        await this.takeBudget(ip, deadline);
        return this.startRead(candidate);
      })();
      const next = q.next;
      // One caller's refusal (budget) must not stick to the queue: the next caller tries again. Nor may the
      // queue outlive it when no read is in flight: refused connections would each leave one behind, forever.
      next.then(
        () => undefined,
        () => {
          if (q.next !== next) return;
          q.next = undefined;
          if ((!q.current || q.current.settled) && this.reads.get(candidate.uid) === q) this.reads.delete(candidate.uid);
        },
      );
    }
    return q.next;
  }

  private startRead(candidate: PodInfo): PodRead {
    const q = this.reads.get(candidate.uid) ?? {};
    const read: PodRead = { startedAt: performance.now(), result: this.readBounded(candidate) };
    q.current = read;
    q.next = undefined;
    this.reads.set(candidate.uid, q);
    void read.result.then(
      (p) => this.options.onRead?.(p && p.uid === candidate.uid ? 'live' : 'gone'),
      () => this.options.onRead?.('error'),
    );
    // Forget the queue once nobody can share the read any more (the next connection needs a newer one anyway).
    const settle = () => {
      read.settled = true;
      this.forget(candidate.uid, read);
    };
    void read.result.then(settle, settle);
    return read;
  }

  private readBounded(candidate: PodInfo): Promise<PodInfo | undefined> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('verification read timed out')), this.options.readTimeoutMs);
      timer.unref();
      this.pods.readPod(candidate.namespace, candidate.name).then(
        (p) => {
          clearTimeout(timer);
          resolve(p);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private forget(uid: string, read: PodRead): void {
    const q = this.reads.get(uid);
    if (q?.current === read && !q.next) this.reads.delete(uid);
  }

  /** Waits for the read budget of `ip` until `deadline`; past it, a 503 says when to come back. */
  private async takeBudget(ip: string, deadline: number): Promise<void> {
    for (;;) {
      const decision = this.budget.take(ip);
      if (decision.ok) return;
      const wakeAt = performance.now() + decision.retryInMs;
      if (wakeAt > deadline) {
        const reason = decision.scope === 'source' ? 'verify_reads_per_source' : 'verify_reads_total';
        const who = decision.scope === 'source' ? `connections from ${ip} open` : 'connections open';
        throw this.refuse(reason, `Too many new ${who} faster than the pod identity agent may verify them with the API server; retry shortly`, Math.max(1, Math.ceil(decision.retryInMs / 1000)));
      }
      // A rate limiter's pause, not a poll: the bucket has a token again at exactly this time.
      await new Promise((r) => setTimeout(r, decision.retryInMs));
    }
  }

  /** Facts about a pod that never change back. */
  private finished(pod: PodInfo): boolean {
    return pod.nodeName !== this.nodeName || pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed';
  }

  private remember(uid: string): void {
    this.gone.add(uid);
    if (this.gone.size > MAX_REMEMBERED_GONE) this.gone.delete(this.gone.values().next().value as string);
  }

  private refuse(reason: RefusalReason, description: string, retryAfterSeconds: number): ImdsError {
    this.options.onRefused?.(reason);
    return unavailable(description, retryAfterSeconds);
  }
}

/** Every field of a PodInfo, so a field added later cannot be left out of `sameForDecisions` unnoticed. */
const COMPARED: Record<keyof PodInfo, true> = { namespace: true, name: true, uid: true, serviceAccountName: true, labels: true, nodeName: true, hostNetwork: true, phase: true, ips: true, terminating: true };
void COMPARED;

/** Two views of one pod that no attribution, selection or issuance decision can tell apart (every field of COMPARED). */
function sameForDecisions(a: PodInfo, b: PodInfo): boolean {
  if (a.namespace !== b.namespace || a.name !== b.name || a.uid !== b.uid || a.serviceAccountName !== b.serviceAccountName) return false;
  if (a.nodeName !== b.nodeName || a.hostNetwork !== b.hostNetwork || a.phase !== b.phase || !!a.terminating !== !!b.terminating) return false;
  if (a.ips.length !== b.ips.length || a.ips.some((ip, i) => ip !== b.ips[i])) return false;
  const keys = Object.keys(a.labels);
  return keys.length === Object.keys(b.labels).length && keys.every((k) => Object.hasOwn(b.labels, k) && a.labels[k] === b.labels[k]);
}
