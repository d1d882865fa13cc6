import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { waitFor } from '../../dev/support/wait.js';
import { Informer, makeWatchFn, objectKey, type WatchFn } from '../../lib/k8s/informer.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

let cluster: TestCluster;
let core: CoreV1Api;

before(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
});

async function namespaceWithSa(prefix: string): Promise<string> {
  const ns = await cluster.namespace(prefix);
  // No controller-manager runs, so nothing creates the default ServiceAccount that pod admission wants.
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'default' } } });
  return ns;
}

function pod(name: string, node: string, labels: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, labels, annotations: { padding: 'x'.repeat(2000) } },
    spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'c', image: 'example.invalid/app:1', env: [{ name: 'A', value: 'b'.repeat(500) }] }] },
  };
}

/** Keeps only what the agent and operator need from a pod. */
function slimPod(p: V1Pod): V1Pod {
  return {
    metadata: { name: p.metadata?.name, namespace: p.metadata?.namespace, uid: p.metadata?.uid, resourceVersion: p.metadata?.resourceVersion, labels: p.metadata?.labels },
    spec: { nodeName: p.spec?.nodeName, serviceAccountName: p.spec?.serviceAccountName, containers: [] },
    status: { podIP: p.status?.podIP, phase: p.status?.phase },
  };
}

/** The real watch, with an outage switch and a way to make the next watch answer 410 Gone. */
function controllableWatch() {
  const real = makeWatchFn(kubeConfigApiServer(cluster.kc));
  const state = { outage: false, staleNext: false, attempts: 0, connected: 0 };
  let current: { abort(): void } | undefined;
  const watch: WatchFn = async (path, query, onEvent, onDone) => {
    state.attempts++;
    if (state.outage) {
      setImmediate(() => onDone(Object.assign(new Error('injected outage'), { statusCode: 503 })));
      return { abort() {} };
    }
    if (state.staleNext) {
      state.staleNext = false;
      // What the API server sends once etcd compaction has passed our resourceVersion (a fresh test server
      // still holds all history, so a really old resourceVersion would just be replayed): a 410 Status, then EOF.
      setImmediate(() => {
        onEvent('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' });
        onDone(null);
      });
      return { abort() {} };
    }
    current = await real(path, query, onEvent, onDone);
    state.connected++;
    return current;
  };
  /** Ends the running watch connection as if the network dropped it. */
  const cut = () => {
    assert.ok(current, 'a watch is connected');
    current.abort();
    current = undefined;
  };
  return { state, watch, cut };
}

test('initial sync, field selector, transform, events and indexes against the real API server', async () => {
  const ns = await namespaceWithSa('inf');
  await core.createNamespacedPod({ namespace: ns, body: pod('a1', 'node-a', { app: 'x' }) });
  await core.createNamespacedPod({ namespace: ns, body: pod('b1', 'node-b', { app: 'x' }) });
  const informer = new Informer<V1Pod>({
    apiServer: kubeConfigApiServer(cluster.kc),
    path: `/api/v1/namespaces/${ns}/pods`,
    fieldSelector: 'spec.nodeName=node-a',
    transform: slimPod,
  });
  informer.addIndex('app', (p) => (p.metadata?.labels?.['app'] ? [p.metadata.labels['app']] : []));
  const events: string[] = [];
  informer.addHandlers({
    onAdd: (p) => events.push(`add ${p.metadata?.name}`),
    // Only label changes: deleting a pod first sets its deletionTimestamp, which is an update too.
    onUpdate: (o, n) => o.metadata?.labels?.['app'] !== n.metadata?.labels?.['app'] && events.push(`update ${n.metadata?.name} app=${n.metadata?.labels?.['app']}`),
    onDelete: (p) => events.push(`delete ${p.metadata?.name}`),
  });
  informer.start();
  try {
    await informer.waitForSync(AbortSignal.timeout(20_000));
    assert.deepEqual(informer.list().map(objectKey), [`${ns}/a1`], 'field selector keeps node-b pods out');
    assert.equal(informer.get(`${ns}/a1`)?.metadata?.annotations, undefined, 'transform stripped annotations');

    await core.createNamespacedPod({ namespace: ns, body: pod('a2', 'node-a', { app: 'y' }) });
    await core.createNamespacedPod({ namespace: ns, body: pod('b2', 'node-b') });
    await waitFor('a2 added', () => informer.get(`${ns}/a2`));
    assert.deepEqual(informer.byIndex('app', 'y').map(objectKey), [`${ns}/a2`]);

    await core.patchNamespacedPod(
      { name: 'a2', namespace: ns, body: [{ op: 'replace', path: '/metadata/labels/app', value: 'x' }] },
    );
    await waitFor('a2 relabelled', () => informer.byIndex('app', 'x').length === 2);
    assert.deepEqual(informer.byIndex('app', 'y'), []);

    await core.deleteNamespacedPod({ name: 'a1', namespace: ns, gracePeriodSeconds: 0 });
    await waitFor('a1 deleted', () => !informer.get(`${ns}/a1`));
    assert.deepEqual(events, ['add a1', 'add a2', 'update a2 app=x', 'delete a1']);
  } finally {
    await informer.stop();
  }
});

test('a watch outage, then an expired resourceVersion: relist delivers the delete that happened meanwhile', async () => {
  const ns = await namespaceWithSa('inf-gone');
  for (const name of ['p1', 'p2']) await core.createNamespacedPod({ namespace: ns, body: pod(name, 'n') });
  const { state, watch, cut } = controllableWatch();
  const informer = new Informer<V1Pod>({ apiServer: kubeConfigApiServer(cluster.kc), path: `/api/v1/namespaces/${ns}/pods`, watch, transform: slimPod, backoff: { initialMs: 50, maxMs: 200 } });
  const deleted: string[] = [];
  const added: string[] = [];
  informer.addHandlers({ onDelete: (p) => deleted.push(p.metadata!.name!), onAdd: (p) => added.push(p.metadata!.name!) });
  informer.start();
  try {
    await informer.waitForSync(AbortSignal.timeout(20_000));
    await waitFor('watch running', () => state.connected >= 1);
    state.outage = true;
    cut();
    const attemptsAtCut = state.attempts;
    await waitFor('reconnect attempts fail during the outage', () => state.attempts >= attemptsAtCut + 2);
    await core.deleteNamespacedPod({ name: 'p1', namespace: ns, gracePeriodSeconds: 0 });
    await core.createNamespacedPod({ namespace: ns, body: pod('p3', 'n') });
    assert.ok(informer.get(`${ns}/p1`), 'the delete is not seen while the watch is down');
    const listsBefore = informer.stats.lists;
    state.staleNext = true;
    state.outage = false;
    await waitFor('relist after 410', () => informer.stats.lists > listsBefore, { timeoutMs: 20_000 });
    await waitFor('p1 deleted and p3 added', () => !informer.get(`${ns}/p1`) && informer.get(`${ns}/p3`));
    assert.deepEqual(deleted, ['p1']);
    assert.deepEqual(added.sort(), ['p1', 'p2', 'p3']);
    assert.ok(informer.stats.relistsOnGone >= 1);
    assert.ok(informer.stats.errors >= 2, 'outage errors were retried with backoff');
  } finally {
    await informer.stop();
  }
});

test('a dropped watch marks the cache stale until a relist, and still sees deletes; resync re-delivers objects', async () => {
  const ns = await namespaceWithSa('inf-resume');
  await core.createNamespacedPod({ namespace: ns, body: pod('q1', 'n') });
  const { state, watch, cut } = controllableWatch();
  const informer = new Informer<V1Pod>({ apiServer: kubeConfigApiServer(cluster.kc), path: `/api/v1/namespaces/${ns}/pods`, watch, transform: slimPod, resyncPeriodMs: 300, backoff: { initialMs: 50, maxMs: 200 } });
  const deleted: string[] = [];
  let resyncs = 0;
  informer.addHandlers({
    onDelete: (p) => deleted.push(p.metadata!.name!),
    onUpdate: (o, n) => {
      if (o === n) resyncs++;
    },
  });
  informer.start();
  try {
    await informer.waitForSync(AbortSignal.timeout(20_000));
    await waitFor('resync delivered', () => resyncs >= 2);
    await waitFor('watch running', () => state.connected >= 1);
    const lists = informer.stats.lists;
    state.outage = true;
    cut();
    await core.deleteNamespacedPod({ name: 'q1', namespace: ns, gracePeriodSeconds: 0 });
    state.outage = false;
    await waitFor('q1 deleted', () => deleted.includes('q1'), { timeoutMs: 20_000 });
    await waitFor('fresh again', () => informer.isFresh(), { timeoutMs: 20_000 });
    assert.ok(informer.stats.lists > lists, 'a broken watch relists before the cache counts as fresh again');
  } finally {
    await informer.stop();
  }
});

test('memory: the transform keeps cached pods small (measured)', async () => {
  const ns = await namespaceWithSa('inf-mem');
  const n = 100;
  await Promise.all(Array.from({ length: n }, (_, i) => core.createNamespacedPod({ namespace: ns, body: pod(`m${i}`, 'n', { app: 'm' }) })));
  const full = new Informer<V1Pod>({ apiServer: kubeConfigApiServer(cluster.kc), path: `/api/v1/namespaces/${ns}/pods`, pageSize: 30 });
  const slim = new Informer<V1Pod>({ apiServer: kubeConfigApiServer(cluster.kc), path: `/api/v1/namespaces/${ns}/pods`, pageSize: 30, transform: slimPod });
  full.start();
  slim.start();
  try {
    await Promise.all([full.waitForSync(AbortSignal.timeout(20_000)), slim.waitForSync(AbortSignal.timeout(20_000))]);
    assert.equal(full.list().length, n, 'paged list returned every pod');
    assert.equal(slim.list().length, n);
    const bytes = (inf: Informer<V1Pod>) => inf.list().reduce((sum, p) => sum + JSON.stringify(p).length, 0);
    const fullBytes = bytes(full);
    const slimBytes = bytes(slim);
    console.log(`cached JSON for ${n} pods: full ${fullBytes} B (${Math.round(fullBytes / n)} B/pod), slim ${slimBytes} B (${Math.round(slimBytes / n)} B/pod)`);
    assert.ok(slimBytes * 5 < fullBytes, `slim ${slimBytes} B should be far below full ${fullBytes} B`);
    assert.ok(slimBytes / n < 600, 'a slim pod stays under 600 B of JSON');
  } finally {
    await Promise.all([full.stop(), slim.stop()]);
  }
});
