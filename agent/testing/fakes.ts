import type { PodIdentity } from '../../lib/api/types.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from '../attribution/types.js';

/** In-memory pods: `cached` is the watch cache, `server` the API server's view that reads see. */
export class FakePods implements PodDirectory {
  private cachedPods: PodInfo[] = [];
  /** What a read finds (the API server's view). */
  server: PodInfo[] = [];
  /** API server reads made. */
  reads = 0;
  /** When set, reads wait for it (to hold a read in flight). */
  gate?: Promise<void>;
  /** When set, reads fail with it (the API server is unreachable or slow). */
  readError?: Error;
  synced = true;
  fresh = true;
  private waiters = new Set<() => void>();

  get cached(): PodInfo[] {
    return this.cachedPods;
  }
  /** Replacing the cache is a watch event: waiters wake. */
  set cached(pods: PodInfo[]) {
    this.cachedPods = pods;
    const w = [...this.waiters];
    this.waiters.clear();
    for (const fn of w) fn();
  }

  byIp(ip: string): PodInfo[] {
    return this.cachedPods.filter((p) => p.ips.includes(ip));
  }
  async readPod(namespace: string, name: string): Promise<PodInfo | undefined> {
    this.reads++;
    await this.gate;
    if (this.readError) throw this.readError;
    return this.server.find((p) => p.namespace === namespace && p.name === name);
  }
  nextChange(_ip: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        this.waiters.delete(done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
  hasSynced(): boolean {
    return this.synced;
  }
  isFresh(): boolean {
    return this.fresh;
  }
}

export class FakeIdentities implements IdentityDirectory {
  private items: PodIdentity[] = [];
  private waiters: (() => void)[] = [];
  /** As the informer-backed directory: one array per namespace until `set` changes anything. */
  private snapshots = new Map<string, readonly PodIdentity[]>();

  set(items: PodIdentity[]): void {
    this.items = items;
    this.snapshots = new Map();
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
  inNamespace(namespace: string): readonly PodIdentity[] {
    let snapshot = this.snapshots.get(namespace);
    if (!snapshot) this.snapshots.set(namespace, (snapshot = this.items.filter((p) => p.metadata.namespace === namespace)));
    return snapshot;
  }
  nextChange(_namespace: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }
  hasSynced(): boolean {
    return true;
  }
  /** False: the PodIdentity watch is broken (what the agent then answers is under test). */
  fresh = true;
  isFresh(): boolean {
    return this.fresh;
  }
}

/** Frozen, as the directory's pods are never changed in place: a test changes a pod by replacing it. */
export function pod(name: string, ip: string, overrides: Partial<PodInfo> = {}): PodInfo {
  return Object.freeze({
    namespace: 'app',
    name,
    uid: `uid-${name}`,
    serviceAccountName: 'default',
    labels: { 'podidentity.dev/identity': 'reader' },
    nodeName: 'node-1',
    hostNetwork: false,
    phase: 'Running',
    ips: [ip],
    ...overrides,
  });
}

export function podIdentity(name: string, namespace = 'app', status: { clientId?: string; ready?: boolean; mode?: 'Federated' | 'Node' } = {}): PodIdentity {
  const clientId = status.clientId ?? `${name}-client`;
  return {
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentity',
    metadata: { name, namespace, uid: `pid-${name}` },
    spec: { identity: { managed: {} } },
    status: {
      clientId,
      principalId: `${name}-oid`,
      tenantId: 'tenant',
      resourceId: `/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`,
      mode: status.mode ?? 'Federated',
      conditions: [{ type: 'Ready', status: status.ready === false ? 'False' : 'True', reason: 'r', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    },
  };
}
