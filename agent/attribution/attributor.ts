import { unavailable } from '../imds/protocol.js';
import { matchesSelector } from '../../lib/api/selector.js';
import { effectiveSelector, type PodIdentity } from '../../lib/api/types.js';
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

interface ServerRead {
  startedAt: number;
  pods: Promise<PodInfo[]>;
}

/**
 * Source IP → the one live pod on this node that owns it. Only the TCP peer address is an input: callers
 * pass the socket, never anything from the request headers.
 *
 * A watch-fed cache alone can be behind the API server: a pod deleted a moment ago may still hold, in the
 * cache, the address a new pod now uses. So each connection is verified once against the API server, by a
 * read that started after the connection opened (a new pod's connection can only open once it holds the
 * address, so that read cannot see the old owner), and is pinned to that pod. Later requests on the
 * connection use the cache, and go back to the API server whenever the cache disagrees with the pin.
 */
export class Attributor {
  private readonly serverReads = new Map<string, ServerRead>();
  private readonly openedAt = new WeakMap<Peer, number>();
  private readonly pinnedUid = new WeakMap<Peer, string>();

  constructor(
    private readonly nodeName: string,
    private readonly pods: PodDirectory,
    private readonly identities: IdentityDirectory,
    private readonly onReadThrough?: (found: boolean) => void,
  ) {}

  /** Call from the server's 'connection' event; a socket never seen here counts as opened at its first request. */
  connectionOpened(peer: Peer): void {
    this.openedAt.set(peer, performance.now());
  }

  /** A pod counts when it is on this node, Running or Pending, not hostNetwork, and has claimed the IP. */
  isLive(pod: PodInfo, ip: string): boolean {
    return pod.nodeName === this.nodeName && !pod.hostNetwork && (pod.phase === 'Running' || pod.phase === 'Pending') && pod.ips.includes(ip);
  }

  async attribute(peer: Peer): Promise<Attribution> {
    const ip = normaliseAddress(peer.remoteAddress);
    if (!ip) return { kind: 'unknown', ip };
    const pinned = this.pinnedUid.get(peer);
    if (pinned === undefined) {
      let opened = this.openedAt.get(peer);
      if (opened === undefined) this.openedAt.set(peer, (opened = performance.now()));
      const who = await this.verify(ip, opened);
      if (who.kind === 'pod') this.pinnedUid.set(peer, who.pod.uid);
      return who;
    }
    const fresh = this.pods.isFresh();
    if (fresh) {
      const cached = this.classify(ip, this.pods.byIp(ip));
      if (cached.kind === 'pod' && cached.pod.uid === pinned) return cached;
      if (cached.kind === 'ambiguous' && cached.pods.some((p) => p.uid === pinned)) return cached;
    }
    // The cache has not caught up (or is broken): the API server decides, and only the pinned pod may pass.
    const now = this.classify(ip, await this.readServer(ip, performance.now(), fresh));
    if (now.kind === 'pod' && now.pod.uid !== pinned) return { kind: 'unknown', ip };
    return now;
  }

  /** The PodIdentities in the pod's own namespace whose selector matches its labels. */
  identitiesFor(pod: PodInfo): PodIdentity[] {
    return this.identities.inNamespace(pod.namespace).filter((pid) => !pid.metadata.deletionTimestamp && matchesSelector(effectiveSelector(pid), pod.labels));
  }

  private async verify(ip: string, openedAt: number): Promise<Attribution> {
    const fresh = this.pods.isFresh();
    try {
      return this.classify(ip, await this.readServer(ip, openedAt, fresh));
    } catch (err) {
      // The watch is live but the read failed: the cache is the best current view, as before pinning existed.
      const cached = fresh ? this.pods.byIp(ip) : [];
      if (cached.length > 0) return this.classify(ip, cached);
      throw err;
    }
  }

  /**
   * Live pods holding `ip` according to the API server, from a read that started at or after `notBefore`.
   * Concurrent callers share a read when it is recent enough for all of them.
   */
  private async readServer(ip: string, notBefore: number, fresh: boolean): Promise<PodInfo[]> {
    let read = this.serverReads.get(ip);
    if (!read || read.startedAt < notBefore) {
      const started: ServerRead = { startedAt: performance.now(), pods: this.pods.readThrough(ip) };
      read = started;
      this.serverReads.set(ip, started);
      void started.pods.then(
        () => this.forget(ip, started),
        () => this.forget(ip, started),
      );
    }
    let live: PodInfo[];
    try {
      live = (await read.pods).filter((p) => this.isLive(p, ip));
    } catch (err) {
      if (fresh) throw err;
      throw unavailable('The pod identity agent is reconnecting to the API server and cannot attribute this request yet; retry shortly', 5);
    }
    this.onReadThrough?.(live.length > 0);
    return live;
  }

  private forget(ip: string, read: ServerRead): void {
    if (this.serverReads.get(ip) === read) this.serverReads.delete(ip);
  }

  private classify(ip: string, candidates: PodInfo[]): Attribution {
    const byUid = new Map(candidates.filter((p) => this.isLive(p, ip)).map((p) => [p.uid, p]));
    if (byUid.size === 0) return { kind: 'unknown', ip };
    if (byUid.size > 1) return { kind: 'ambiguous', ip, pods: [...byUid.values()] };
    return { kind: 'pod', pod: [...byUid.values()][0]! };
  }
}
