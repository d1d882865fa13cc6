import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { PodIdentity } from '../../lib/api/types.js';
import type { ListFn, WatchFn } from '../../lib/k8s/informer.js';
import { createLogger } from '../../lib/log.js';
import { KubeIdentityDirectory, slimPodIdentity } from './kube.js';

test('a cached PodIdentity keeps what attribution and issuance read, without managedFields and annotations', () => {
  const pid = {
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentity',
    metadata: {
      name: 'web',
      namespace: 'demo',
      uid: 'u-1',
      resourceVersion: '7',
      labels: { team: 'a' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"spec":{}}' },
      managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
    },
    spec: { identity: { managed: {} }, selector: { matchLabels: { app: 'web' } }, mode: 'Federated' as const },
    status: { clientId: 'c', tenantId: 't', conditions: [{ type: 'Ready', status: 'True' }] },
  };
  const slim = slimPodIdentity(pid as unknown as Parameters<typeof slimPodIdentity>[0]);
  assert.deepEqual(slim.metadata, { name: 'web', namespace: 'demo', uid: 'u-1', resourceVersion: '7', labels: { team: 'a' } });
  assert.deepEqual(slim.spec, pid.spec);
  assert.deepEqual(slim.status, pid.status);
  assert.equal(pid.metadata.managedFields.length, 1, 'the informer may still hand the original to others: never mutated');
});

test("a namespace's PodIdentities are one array until one of them changes, so what is derived from it can be kept on it", async () => {
  const items = [pid('a', 'team-1', '1'), pid('b', 'team-2', '2')];
  let emit: (type: string, obj: unknown) => void = () => undefined;
  let watching: () => void = () => undefined;
  const watchStarted = new Promise<void>((resolve) => (watching = resolve));
  const list: ListFn<PodIdentity & KubernetesObject> = async () => ({ items: structuredClone(items), metadata: { resourceVersion: '2' } }) as KubernetesListObject<PodIdentity & KubernetesObject>;
  const watch: WatchFn = async (_path, _query, onEvent) => {
    emit = onEvent;
    watching();
    return { abort: () => undefined };
  };
  const dir = new KubeIdentityDirectory(undefined, createLogger('test', 'error'), { list, watch });
  const stop = new AbortController();
  dir.informer.start(stop.signal);
  try {
    await dir.informer.waitForSync();
    await watchStarted;
    const first = dir.inNamespace('team-1');
    assert.deepEqual(first.map((p) => p.metadata.name), ['a']);
    assert.equal(dir.inNamespace('team-1'), first, 'unchanged: the same array');
    const other = dir.inNamespace('team-2');
    emit('MODIFIED', pid('b', 'team-2', '3'));
    assert.equal(dir.inNamespace('team-1'), first, 'a change in another namespace leaves it');
    assert.notEqual(dir.inNamespace('team-2'), other);
    emit('MODIFIED', { ...pid('a', 'team-1', '4'), spec: { identity: { managed: {} }, selector: { matchLabels: { app: 'other' } } } });
    const updated = dir.inNamespace('team-1');
    assert.notEqual(updated, first, 'an update: a new array');
    assert.deepEqual(updated[0]!.spec.selector, { matchLabels: { app: 'other' } });
    assert.deepEqual(first[0]!.spec.selector, undefined, 'the array handed out before is never changed in place');
    emit('ADDED', pid('c', 'team-1', '5'));
    assert.deepEqual(dir.inNamespace('team-1').map((p) => p.metadata.name).sort(), ['a', 'c']);
    const before = dir.inNamespace('team-1');
    emit('DELETED', pid('a', 'team-1', '6'));
    assert.notEqual(dir.inNamespace('team-1'), before);
    assert.deepEqual(dir.inNamespace('team-1').map((p) => p.metadata.name), ['c']);
  } finally {
    stop.abort();
  }
});

function pid(name: string, namespace: string, resourceVersion: string): PodIdentity & KubernetesObject {
  return { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentity', metadata: { name, namespace, uid: `u-${name}`, resourceVersion }, spec: { identity: { managed: {} } } } as PodIdentity & KubernetesObject;
}
