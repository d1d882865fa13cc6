import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubernetesListObject, V1ConfigMap } from '@kubernetes/client-node';
import { waitFor } from '../../dev/support/wait.js';
import type { ListFn, WatchFn } from '../../lib/k8s/informer.js';
import { createLogger } from '../../lib/log.js';
import { AgentMetrics } from '../metrics.js';
import { KubeExceptionDirectory } from './exceptions-kube.js';
import { EXCEPTIONS_KEY } from './exceptions.js';

const ADDON_POD = { namespace: 'app', labels: { component: 'addon' } };

function configMap(yaml: string, resourceVersion: string): V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'imds-exceptions', namespace: 'pod-identity', uid: 'cm-1', resourceVersion }, data: { [EXCEPTIONS_KEY]: yaml } };
}

test('attack: an exception revoked while the ConfigMap watch is broken: the directory says it is not fresh until the relist, which drops the entry', async () => {
  let server = configMap('exceptions:\n- namespace: app\n  podLabels: {component: addon}\n', '2');
  let listFails = false;
  let lists = 0;
  let breakWatch: (() => void) | undefined;
  const list: ListFn<V1ConfigMap> = async () => {
    lists++;
    if (listFails) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    return { items: [structuredClone(server)], metadata: { resourceVersion: server.metadata!.resourceVersion! } } as KubernetesListObject<V1ConfigMap>;
  };
  const watch: WatchFn = async (_path, _query, _onEvent, onDone) => {
    breakWatch = () => onDone(Object.assign(new Error('connection reset by peer'), { code: 'ECONNRESET' }));
    return { abort: () => undefined };
  };
  const dir = new KubeExceptionDirectory(undefined, { namespace: 'pod-identity', name: 'imds-exceptions' }, new AgentMetrics(), createLogger('test', 'error'), { list, watch });
  const stop = new AbortController();
  dir.informer.start(stop.signal);
  try {
    await dir.informer.waitForSync();
    await waitFor('the first watch', () => breakWatch !== undefined, { timeoutMs: 5_000, intervalMs: 5 });
    assert.ok(dir.isFresh());
    assert.equal(dir.match(ADDON_POD)?.namespace, 'app');

    listFails = true;
    server = configMap('exceptions: []\n', '3');
    const broken = breakWatch!;
    breakWatch = undefined;
    broken();
    await waitFor('a failed relist', () => lists >= 3, { timeoutMs: 10_000, intervalMs: 5 });
    assert.equal(dir.isFresh(), false, 'the revocation may be missing: not fresh');

    listFails = false;
    await waitFor('the relist and a new watch', () => dir.isFresh() && breakWatch !== undefined, { timeoutMs: 10_000, intervalMs: 5 });
    assert.equal(dir.match(ADDON_POD), undefined, 'revoked');
  } finally {
    stop.abort();
  }
});
