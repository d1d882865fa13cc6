import { unavailable } from '../imds/protocol.js';
import { matchesSelector } from '../../lib/api/selector.js';
import { effectiveSelector, type PodIdentity } from '../../lib/api/types.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from './types.js';

export type Attribution =
  | { kind: 'pod'; pod: PodInfo }
  | { kind: 'unknown'; ip: string }
  | { kind: 'ambiguous'; ip: string; pods: PodInfo[] };

/** `::ffff:10.0.0.5` (an IPv4 peer on a dual-stack socket) is `10.0.0.5`. */
export function normaliseAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
}

/**
 * Source IP → the one live pod on this node that owns it. Only the TCP peer address is an input: callers
 * pass `socket.remoteAddress` and nothing from the request headers.
 */
export class Attributor {
  private readonly inflight = new Map<string, Promise<PodInfo[]>>();

  constructor(
    private readonly nodeName: string,
    private readonly pods: PodDirectory,
    private readonly identities: IdentityDirectory,
    private readonly onReadThrough?: (found: boolean) => void,
  ) {}

  /** A pod counts when it is on this node, Running or Pending, not hostNetwork, and has claimed the IP. */
  isLive(pod: PodInfo, ip: string): boolean {
    return pod.nodeName === this.nodeName && !pod.hostNetwork && (pod.phase === 'Running' || pod.phase === 'Pending') && pod.ips.includes(ip);
  }

  async attribute(remoteAddress: string | undefined): Promise<Attribution> {
    const ip = normaliseAddress(remoteAddress);
    if (!ip) return { kind: 'unknown', ip };
    // While the pod watch is broken or relisting, the cache may still map this IP to a deleted pod whose
    // address a new pod now holds: ask the API server instead, and fail closed if it does not answer.
    const fresh = this.pods.isFresh();
    let live = fresh ? this.pods.byIp(ip).filter((p) => this.isLive(p, ip)) : [];
    if (live.length === 0) {
      // A pod newer than our watch (or a stale cache): one bounded API read, shared by concurrent callers.
      try {
        live = (await this.readThrough(ip)).filter((p) => this.isLive(p, ip));
      } catch (err) {
        if (fresh) throw err;
        throw unavailable('The pod identity agent is reconnecting to the API server and cannot attribute this request yet; retry shortly', 5);
      }
      this.onReadThrough?.(live.length > 0);
    }
    const byUid = new Map(live.map((p) => [p.uid, p]));
    if (byUid.size === 0) return { kind: 'unknown', ip };
    if (byUid.size > 1) return { kind: 'ambiguous', ip, pods: [...byUid.values()] };
    return { kind: 'pod', pod: [...byUid.values()][0]! };
  }

  /** The PodIdentities in the pod's own namespace whose selector matches its labels. */
  identitiesFor(pod: PodInfo): PodIdentity[] {
    return this.identities.inNamespace(pod.namespace).filter((pid) => !pid.metadata.deletionTimestamp && matchesSelector(effectiveSelector(pid), pod.labels));
  }

  private readThrough(ip: string): Promise<PodInfo[]> {
    let p = this.inflight.get(ip);
    if (!p) {
      p = this.pods.readThrough(ip).finally(() => this.inflight.delete(ip));
      this.inflight.set(ip, p);
    }
    return p;
  }
}
