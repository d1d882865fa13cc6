/** An in-memory cluster + Azure for reconciler unit tests. */
import { API_VERSION, DEFAULT_SELECTOR_LABEL, PODIDENTITY_KIND, type PodIdentity, type PodIdentityPolicy, type PodIdentitySpec } from '../../lib/api/types.js';
import { FakeAzure } from './fake-azure.js';
import { normalizeId } from '../azure/ids.js';
import { identityIdsOf } from '../podidentity/desired.js';
import { MemoryOwnershipStore } from './memory-ownership.js';
import type { ClusterView, EventType, PodIdentityWriter, SlimNode, SlimPod } from '../podidentity/ports.js';
import { PodIdentityReconciler, type ReconcilerSettings } from '../podidentity/reconciler.js';
import { ScaleSetBatcher } from '../podidentity/scaleset-batcher.js';
import { recordedDemands } from '../podidentity/scalesets.js';

export const SUB = '00000000-0000-4000-8000-000000000001';

export class World implements ClusterView, PodIdentityWriter {
  readonly pids = new Map<string, PodIdentity>();
  policyList: PodIdentityPolicy[] = [];
  readonly namespaces = new Map<string, Record<string, string>>();
  podList: SlimPod[] = [];
  readonly nodes = new Map<string, SlimNode>();
  readonly events: { key: string; type: EventType; reason: string; message: string }[] = [];
  statusPatches = 0;
  private rv = 1;

  podIdentity(key: string) {
    const p = this.pids.get(key);
    return p ? structuredClone(p) : undefined;
  }
  podIdentities() {
    return [...this.pids.values()].map((p) => structuredClone(p));
  }
  policies() {
    return this.policyList;
  }
  namespaceLabels(ns: string) {
    return this.namespaces.get(ns) ?? {};
  }
  pods(ns: string) {
    return this.podList.filter((p) => p.metadata.namespace === ns);
  }
  podsLabelledFor(ns: string, value: string) {
    return this.pods(ns).filter((p) => p.metadata.labels?.[DEFAULT_SELECTOR_LABEL] === value);
  }
  podIdentitiesWithSelector(ns: string) {
    return this.podIdentities().filter((p) => p.metadata.namespace === ns && p.spec.selector);
  }
  podIdentitiesOnIdentity(identityId: string) {
    return this.podIdentities().filter((p) => identityIdsOf(p).includes(normalizeId(identityId)));
  }
  node(name: string) {
    return this.nodes.get(name);
  }

  create(namespace: string, name: string, spec: PodIdentitySpec): PodIdentity {
    const pid: PodIdentity = { apiVersion: API_VERSION, kind: PODIDENTITY_KIND, metadata: { namespace, name, uid: `uid-${namespace}-${name}-${this.rv}`, generation: 1, resourceVersion: String(this.rv++) }, spec };
    this.pids.set(`${namespace}/${name}`, pid);
    return pid;
  }
  updateSpec(key: string, change: (spec: PodIdentitySpec) => void): void {
    const pid = this.pids.get(key)!;
    change(pid.spec);
    pid.metadata.generation = (pid.metadata.generation ?? 1) + 1;
    pid.metadata.resourceVersion = String(this.rv++);
  }
  delete(key: string): void {
    const pid = this.pids.get(key)!;
    if (!pid.metadata.finalizers?.length) this.pids.delete(key);
    else pid.metadata.deletionTimestamp = new Date().toISOString();
  }
  addPod(namespace: string, name: string, labels: Record<string, string>, opts: { serviceAccountName?: string; nodeName?: string } = {}): void {
    this.podList.push({ metadata: { namespace, name, labels }, spec: { serviceAccountName: opts.serviceAccountName, nodeName: opts.nodeName }, status: { phase: 'Running' } });
  }
  removePod(namespace: string, name: string): void {
    this.podList = this.podList.filter((p) => !(p.metadata.namespace === namespace && p.metadata.name === name));
  }
  addNode(name: string, scaleSetId: string, instance = '0'): void {
    this.nodes.set(name, { metadata: { name }, spec: { providerID: `azure://${scaleSetId}/virtualMachines/${instance}` } });
  }

  async addFinalizer(pid: PodIdentity, finalizer: string) {
    const live = this.pids.get(`${pid.metadata.namespace}/${pid.metadata.name}`)!;
    if (live.metadata.resourceVersion !== pid.metadata.resourceVersion) throw Object.assign(new Error('conflict'), { code: 409 });
    live.metadata.finalizers = [...(live.metadata.finalizers ?? []), finalizer];
    live.metadata.resourceVersion = String(this.rv++);
    return live.metadata.resourceVersion;
  }
  async removeFinalizer(pid: PodIdentity, finalizer: string) {
    const key = `${pid.metadata.namespace}/${pid.metadata.name}`;
    const live = this.pids.get(key);
    if (!live) return;
    live.metadata.finalizers = (live.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    if (live.metadata.deletionTimestamp && live.metadata.finalizers.length === 0) this.pids.delete(key);
  }
  async patchStatus(pid: PodIdentity, status: Record<string, unknown>) {
    const live = this.pids.get(`${pid.metadata.namespace}/${pid.metadata.name}`)!;
    const next: Record<string, unknown> = { ...(live.status ?? {}) };
    for (const [k, v] of Object.entries(status)) {
      if (v === null) delete next[k];
      else next[k] = structuredClone(v);
    }
    live.status = next;
    live.metadata.resourceVersion = String(this.rv++);
    this.statusPatches++;
    return live.metadata.resourceVersion;
  }
  event(pid: PodIdentity, type: EventType, reason: string, message: string): void {
    this.events.push({ key: `${pid.metadata.namespace}/${pid.metadata.name}`, type, reason, message });
  }
}

export function harness(settings: Partial<ReconcilerSettings> = {}) {
  const world = new World();
  const azure = new FakeAzure(SUB);
  const ownership = new MemoryOwnershipStore();
  const settled: string[] = [];
  const clock = () => new Date();
  const batcher = new ScaleSetBatcher({
    now: () => clock().getTime(),
    scaleSets: azure.scaleSets,
    ownership,
    windowMs: 5,
    recordedDemands: () => recordedDemands(world),
  });
  batcher.onSettled((keys) => settled.push(...keys));
  const reconciler = new PodIdentityReconciler({
    view: world,
    writer: world,
    azure,
    batcher,
    ownership,
    now: clock,
    settings: { subscriptionId: SUB, defaultResourceGroup: 'pods', location: 'eastus', defaultMode: 'Federated', oidcIssuer: 'https://issuer.example', batchWindowMs: 5, ...settings },
  });
  const r = reconciler;
  /** Reconciles `keys` until nothing is requeued and the batcher is idle (like the controller would). */
  async function settle(...keys: string[]): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const before = JSON.stringify([...world.pids.entries()]);
      let again = false;
      for (const key of keys) {
        const result = await r.reconcile(key);
        if (result?.requeueAfterMs !== undefined) again = true;
      }
      await batcher.idle();
      if (!again && settled.length === 0 && before === JSON.stringify([...world.pids.entries()])) return;
      settled.length = 0;
    }
    throw new Error('did not settle');
  }
  return { world, azure, ownership, batcher, reconciler: r, settle };
}

/** A PodIdentityPolicy for the named namespaces (all namespaces when omitted). */
export function namespacePolicy(name: string, namespaces: string[] | undefined, spec: PodIdentityPolicy['spec']): PodIdentityPolicy {
  return {
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentityPolicy',
    metadata: { name },
    spec: {
      ...(namespaces ? { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] } } : {}),
      ...spec,
    },
  };
}
