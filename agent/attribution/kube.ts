import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import type { ApiServer } from '../../lib/k8s/api-server.js';
import { API_VERSION, PODIDENTITY_PLURAL, type PodIdentity } from '../../lib/api/types.js';
import { Informer, type ListFn, type WatchFn } from '../../lib/k8s/informer.js';
import { getJson, RawApiError } from '../../lib/k8s/rest.js';
import type { Logger } from '../../lib/log.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from './types.js';

/** The informer's object type: timestamps are really strings in plain JSON, which nothing here reads. */
type PodIdentityObject = PodIdentity & KubernetesObject;

/** Plain API JSON of a pod (the informer and the raw read both return it). */
type PodJson = V1Pod;

export function podInfo(pod: PodJson): PodInfo {
  const ips = new Set<string>();
  if (pod.status?.podIP) ips.add(pod.status.podIP);
  for (const entry of pod.status?.podIPs ?? []) if (entry.ip) ips.add(entry.ip);
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    serviceAccountName: pod.spec?.serviceAccountName || 'default',
    labels: pod.metadata?.labels ?? {},
    nodeName: pod.spec?.nodeName ?? '',
    hostNetwork: pod.spec?.hostNetwork === true,
    phase: pod.status?.phase ?? '',
    ips: [...ips],
    terminating: pod.metadata?.deletionTimestamp !== undefined && pod.metadata?.deletionTimestamp !== null,
  };
}

/** Keeps only what attribution reads, so a node with many pods holds little memory. */
function slimPod(pod: PodJson): PodJson {
  return {
    metadata: {
      name: pod.metadata?.name,
      namespace: pod.metadata?.namespace,
      uid: pod.metadata?.uid,
      resourceVersion: pod.metadata?.resourceVersion,
      labels: pod.metadata?.labels,
      deletionTimestamp: pod.metadata?.deletionTimestamp,
    },
    spec: { nodeName: pod.spec?.nodeName, hostNetwork: pod.spec?.hostNetwork, serviceAccountName: pod.spec?.serviceAccountName, containers: [] },
    status: { phase: pod.status?.phase, podIP: pod.status?.podIP, podIPs: pod.status?.podIPs },
  };
}

/** The pods of one node, from the shared informer, indexed by every IP they claim. */
export class KubePodDirectory implements PodDirectory {
  readonly informer: Informer<PodJson>;
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly api: ApiServer,
    nodeName: string,
    private readonly readTimeoutMs: number,
    logger: Logger,
  ) {
    this.informer = new Informer<PodJson>({
      path: '/api/v1/pods',
      apiServer: api,
      fieldSelector: `spec.nodeName=${nodeName}`,
      transform: slimPod,
      logger,
      name: 'pods',
    });
    this.informer.addIndex('ip', (pod) => podInfo(pod).ips);
    const wake = (...objs: PodJson[]) => {
      for (const obj of objs) for (const ip of this.info(obj).ips) this.wake(ip);
    };
    this.informer.addHandlers({ onAdd: (p) => wake(p), onUpdate: (old, p) => wake(old, p), onDelete: (p) => wake(p) });
  }

  byIp(ip: string): PodInfo[] {
    return this.informer.byIndex('ip', ip).map((pod) => this.info(pod));
  }

  /** Cached objects are replaced, never mutated, on every watch event, so one PodInfo per object is exact. */
  private readonly infos = new WeakMap<PodJson, PodInfo>();

  private info(pod: PodJson): PodInfo {
    let info = this.infos.get(pod);
    if (!info) this.infos.set(pod, (info = podInfo(pod)));
    return info;
  }

  /**
   * GET of one pod with no resourceVersion: a quorum read of a single etcd key, so its cost is the same with
   * ten pods or fifty thousand (a LIST with a field selector reads every pod in the cluster).
   */
  async readPod(namespace: string, name: string): Promise<PodInfo | undefined> {
    // Not AbortSignal.timeout: its timer outlives the read and aborts a request that already finished, which
    // costs an exception per read (and can take the pooled keep-alive connection with it).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`reading pod ${namespace}/${name} took longer than ${this.readTimeoutMs} ms`)), this.readTimeoutMs);
    try {
      const pod = await getJson<PodJson>(this.api, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, {}, controller.signal);
      return podInfo(pod);
    } catch (err) {
      if (err instanceof RawApiError && err.code === 404) return undefined;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  nextChange(ip: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      let set = this.waiters.get(ip);
      if (!set) this.waiters.set(ip, (set = new Set()));
      const waiters = set;
      const done = () => {
        signal.removeEventListener('abort', done);
        waiters.delete(done);
        if (waiters.size === 0 && this.waiters.get(ip) === waiters) this.waiters.delete(ip);
        resolve();
      };
      waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private wake(ip: string): void {
    const set = this.waiters.get(ip);
    if (!set) return;
    this.waiters.delete(ip);
    for (const fn of set) fn();
  }

  hasSynced(): boolean {
    return this.informer.hasSynced();
  }

  isFresh(): boolean {
    return this.informer.isFresh();
  }
}

/**
 * Keeps a PodIdentity without what attribution never reads: managedFields and annotations (kubectl's
 * last-applied-configuration repeats the whole spec). With 1,000 PodIdentities in the cluster, every
 * agent holds every one of them.
 */
export function slimPodIdentity(pid: PodIdentityObject): PodIdentityObject {
  const { managedFields: _managedFields, annotations: _annotations, ...metadata } = pid.metadata;
  return { ...pid, metadata };
}

const MAX_SNAPSHOTS = 10_000;

/** PodIdentities of every namespace, indexed by namespace; waiters are woken by informer events. */
export class KubeIdentityDirectory implements IdentityDirectory {
  readonly informer: Informer<PodIdentityObject>;
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Each namespace's PodIdentities as last returned; dropped (never changed in place) when one of them changes. */
  private readonly snapshots = new Map<string, readonly PodIdentity[]>();

  /** `source`: the list and watch to use instead of the API server's (tests). */
  constructor(api: ApiServer | undefined, logger: Logger, source?: { list: ListFn<PodIdentityObject>; watch: WatchFn }) {
    this.informer = new Informer<PodIdentityObject>({
      path: `/apis/${API_VERSION}/${PODIDENTITY_PLURAL}`,
      ...(source ?? { apiServer: api }),
      transform: slimPodIdentity,
      logger,
      name: 'podidentities',
    });
    this.informer.addIndex('namespace', (pid) => [pid.metadata.namespace ?? '']);
    const wake = (pid: PodIdentityObject) => {
      const ns = pid.metadata.namespace ?? '';
      this.snapshots.delete(ns);
      const set = this.waiters.get(ns);
      if (!set) return;
      this.waiters.delete(ns);
      for (const fn of set) fn();
    };
    this.informer.addHandlers({ onAdd: wake, onUpdate: (_old, obj) => wake(obj), onDelete: wake });
  }

  inNamespace(namespace: string): readonly PodIdentity[] {
    let snapshot = this.snapshots.get(namespace);
    if (!snapshot) {
      // Bounded by the namespaces this node's pods ask from; entries go when their namespace changes.
      if (this.snapshots.size >= MAX_SNAPSHOTS) this.snapshots.clear();
      this.snapshots.set(namespace, (snapshot = this.informer.byIndex('namespace', namespace)));
    }
    return snapshot;
  }

  nextChange(namespace: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      let set = this.waiters.get(namespace);
      if (!set) this.waiters.set(namespace, (set = new Set()));
      const done = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters.get(namespace)?.delete(done);
        resolve();
      };
      set.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  hasSynced(): boolean {
    return this.informer.hasSynced();
  }

  isFresh(): boolean {
    return this.informer.isFresh();
  }
}
