import type { PodIdentity } from '../../lib/api/types.js';

/** The parts of a pod that attribution and issuance need. */
export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  serviceAccountName: string;
  labels: Record<string, string>;
  nodeName: string;
  hostNetwork: boolean;
  phase: string;
  ips: string[];
}

/** Pods scheduled to this node, by IP. Implemented on the shared informer; faked in unit tests. */
export interface PodDirectory {
  /** Cached pods that have claimed `ip` (any phase; the caller decides which count). */
  byIp(ip: string): PodInfo[];
  /** One bounded read from the API server for an IP the cache does not know yet. */
  readThrough(ip: string): Promise<PodInfo[]>;
  hasSynced(): boolean;
  /** False while the pod watch is broken or relisting: the cache may still map an IP to a deleted pod. */
  isFresh(): boolean;
}

/** PodIdentities by namespace. Implemented on the shared informer; faked in unit tests. */
export interface IdentityDirectory {
  inNamespace(namespace: string): PodIdentity[];
  /** Resolves at the next add/update/delete of a PodIdentity in `namespace`, or when `signal` aborts. */
  nextChange(namespace: string, signal: AbortSignal): Promise<void>;
  hasSynced(): boolean;
}
