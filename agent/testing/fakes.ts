import type { PodIdentity } from '../../lib/api/types.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from '../attribution/types.js';

/** In-memory pods, with a separate "API server" list for read-through. */
export class FakePods implements PodDirectory {
  cached: PodInfo[] = [];
  /** What a read-through finds (the API server's view). */
  server: PodInfo[] = [];
  readThroughs = 0;
  /** When set, read-throughs wait for it (to hold a read in flight). */
  gate?: Promise<void>;
  synced = true;

  byIp(ip: string): PodInfo[] {
    return this.cached.filter((p) => p.ips.includes(ip));
  }
  async readThrough(ip: string): Promise<PodInfo[]> {
    this.readThroughs++;
    await this.gate;
    return this.server.filter((p) => p.ips.includes(ip));
  }
  hasSynced(): boolean {
    return this.synced;
  }
  fresh = true;
  isFresh(): boolean {
    return this.fresh;
  }
}

export class FakeIdentities implements IdentityDirectory {
  private items: PodIdentity[] = [];
  private waiters: (() => void)[] = [];

  set(items: PodIdentity[]): void {
    this.items = items;
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
  inNamespace(namespace: string): PodIdentity[] {
    return this.items.filter((p) => p.metadata.namespace === namespace);
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
}

export function pod(name: string, ip: string, overrides: Partial<PodInfo> = {}): PodInfo {
  return {
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
  };
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
