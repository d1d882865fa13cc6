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
  /**
   * Being deleted (deletionTimestamp set). Its sandbox, and so its address, may be released before the API
   * server shows anything else, so a new connection from that address may already be another pod's.
   */
  terminating?: boolean;
}

/** Pods scheduled to this node, by IP. Implemented on the shared informer; faked in unit tests. */
export interface PodDirectory {
  /**
   * Cached pods that have claimed `ip` (any phase; the caller decides which count). A PodInfo is never changed
   * in place: a changed pod is a new object, so callers may memoise what they derive from it on the object.
   */
  byIp(ip: string): PodInfo[];
  /**
   * One consistent read of one pod by name from the API server (a single etcd key, whatever the size of the
   * cluster). `undefined`: no pod has that name now. Rejects when the API server does not answer in time.
   */
  readPod(namespace: string, name: string): Promise<PodInfo | undefined>;
  /** Resolves at the next cache change of a pod that claims or claimed `ip`, or when `signal` aborts. */
  nextChange(ip: string, signal: AbortSignal): Promise<void>;
  hasSynced(): boolean;
  /** False while the pod watch is broken or relisting: the cache may still map an IP to a deleted pod. */
  isFresh(): boolean;
}

/** PodIdentities by namespace. Implemented on the shared informer; faked in unit tests. */
export interface IdentityDirectory {
  /**
   * The same array, never changed in place, until a PodIdentity in `namespace` is added, updated or deleted:
   * callers may memoise what they derive from it on the array itself.
   */
  inNamespace(namespace: string): readonly PodIdentity[];
  /** Resolves at the next add/update/delete of a PodIdentity in `namespace`, or when `signal` aborts. */
  nextChange(namespace: string, signal: AbortSignal): Promise<void>;
  hasSynced(): boolean;
  /** False while the PodIdentity watch is broken or relisting: a PodIdentity deleted or changed meanwhile may still show. */
  isFresh(): boolean;
}
