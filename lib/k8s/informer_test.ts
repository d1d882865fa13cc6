import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { Informer, objectKey, splitKey, type ListFn, type WatchFn } from './informer.js';

type Obj = KubernetesObject & { spec?: { node?: string; big?: string } };

function obj(name: string, rv: string, node = 'n1', namespace = 'ns'): Obj {
  return { metadata: { name, namespace, resourceVersion: rv }, spec: { node, big: 'x'.repeat(100) } };
}

/** A fake API: the list returns `items`; each watch is a handle the test can push events into or end. */
function fakeApi() {
  const state = { items: [] as Obj[], rv: '1', listCalls: 0, listFails: 0 };
  const watches: { query: Record<string, unknown>; emit: (t: string, o: unknown) => void; end: (err?: unknown) => void }[] = [];
  const list: ListFn<Obj> = async () => {
    state.listCalls++;
    if (state.listFails > 0) {
      state.listFails--;
      throw new Error('list failed');
    }
    return { items: structuredClone(state.items), metadata: { resourceVersion: state.rv } } as KubernetesListObject<Obj>;
  };
  const watch: WatchFn = async (_path, query, onEvent, onDone) => {
    let done = false;
    const end = (err?: unknown) => {
      if (!done) {
        done = true;
        onDone(err ?? null);
      }
    };
    watches.push({ query, emit: onEvent, end });
    return { abort: () => end(new Error('aborted')) };
  };
  return { state, watches, list, watch };
}

async function until(what: string, check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('keys', () => {
  assert.equal(objectKey(obj('a', '1')), 'ns/a');
  assert.equal(objectKey({ metadata: { name: 'node1' } }), 'node1');
  assert.deepEqual(splitKey('ns/a'), { namespace: 'ns', name: 'a' });
  assert.deepEqual(splitKey('node1'), { name: 'node1' });
});

test('lists, then watches from the list resourceVersion; events update cache, indexes and handlers', async () => {
  const api = fakeApi();
  api.state.items = [obj('a', '5'), obj('b', '6', 'n2')];
  api.state.rv = '10';
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch, transform: (o) => ({ ...o, spec: { node: o.spec?.node } }) });
  inf.addIndex('node', (o) => (o.spec?.node ? [o.spec.node] : []));
  const seen: string[] = [];
  inf.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata?.name}`),
    onUpdate: (a, b) => seen.push(`update ${a.metadata?.resourceVersion}->${b.metadata?.resourceVersion}`),
    onDelete: (o) => seen.push(`delete ${o.metadata?.name}`),
  });
  const ctl = new AbortController();
  inf.start(ctl.signal);
  await inf.waitForSync();
  assert.ok(inf.hasSynced());
  await until('watch', () => api.watches.length === 1);
  assert.equal(api.watches[0]!.query['resourceVersion'], '10');
  assert.equal(inf.get('ns/a')?.spec?.big, undefined, 'transform applied');
  assert.deepEqual(inf.byIndex('node', 'n1').map(objectKey), ['ns/a']);

  const w = api.watches[0]!;
  w.emit('ADDED', obj('c', '11', 'n1'));
  w.emit('MODIFIED', obj('a', '12', 'n2'));
  w.emit('MODIFIED', obj('a', '12', 'n2')); // same resourceVersion: no event
  w.emit('DELETED', obj('b', '13', 'n2'));
  w.emit('BOOKMARK', { metadata: { resourceVersion: '14' } });
  assert.deepEqual(seen, ['add a', 'add b', 'add c', 'update 5->12', 'delete b']);
  assert.deepEqual(inf.byIndex('node', 'n2').map(objectKey), ['ns/a']);
  assert.deepEqual(inf.byIndex('node', 'n1').map(objectKey), ['ns/c']);
  assert.deepEqual(inf.list().map(objectKey).sort(), ['ns/a', 'ns/c']);

  // A normal close: reconnect from the last seen resourceVersion (the bookmark's).
  w.end();
  await until('second watch', () => api.watches.length === 2);
  assert.equal(api.watches[1]!.query['resourceVersion'], '14');
  assert.equal(api.state.listCalls, 1);
  ctl.abort();
  await inf.stop();
});

test('410 relists and emits deletes for objects that vanished while not watching', async () => {
  const api = fakeApi();
  api.state.items = [obj('a', '5'), obj('b', '6')];
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch, backoff: { initialMs: 1, maxMs: 5 } });
  const deleted: string[] = [];
  const updated: string[] = [];
  inf.onDelete((o) => deleted.push(objectKey(o)));
  inf.onUpdate((_, o) => updated.push(objectKey(o)));
  inf.start();
  await until('watch', () => api.watches.length === 1);
  api.state.items = [obj('a', '20')];
  api.state.rv = '21';
  api.watches[0]!.emit('ERROR', { kind: 'Status', code: 410, message: 'too old' });
  await until('relist', () => api.state.listCalls === 2 && api.watches.length === 2);
  assert.deepEqual(deleted, ['ns/b']);
  assert.deepEqual(updated, ['ns/a']);
  assert.equal(api.watches[1]!.query['resourceVersion'], '21');
  assert.equal(inf.stats.relistsOnGone, 1);
  await inf.stop();
});

test('errors restart with backoff and never stop the informer', async () => {
  const api = fakeApi();
  api.state.listFails = 3;
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch, backoff: { initialMs: 1, maxMs: 4 } });
  inf.start();
  await inf.waitForSync();
  assert.equal(api.state.listCalls, 4);
  await until('watch', () => api.watches.length === 1);
  assert.equal(inf.isFresh(), true);
  api.state.listFails = Number.MAX_SAFE_INTEGER;
  api.watches[0]!.end(Object.assign(new Error('boom'), { statusCode: 500 }));
  // The cache may have missed changes while the watch was broken: not fresh until a relist succeeds.
  await until('stale', () => !inf.isFresh());
  await until('relist attempts', () => api.state.listCalls >= 6);
  assert.equal(inf.isFresh(), false, 'still stale while every relist fails');
  assert.equal(api.watches.length, 1, 'no watch without a successful relist');
  api.state.listFails = 0;
  await until('rewatch', () => api.watches.length === 2);
  assert.equal(inf.isFresh(), true);
  assert.ok(inf.stats.errors >= 4);
  await inf.stop();
});

test('resync re-delivers cached objects as updates; handlers that throw do not break the cache', async () => {
  const api = fakeApi();
  api.state.items = [obj('a', '5')];
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch, resyncPeriodMs: 10 });
  inf.onAdd(() => {
    throw new Error('bad handler');
  });
  let resyncs = 0;
  inf.onUpdate((a, b) => {
    if (a === b) resyncs++;
  });
  inf.start();
  await inf.waitForSync();
  await until('two resyncs', () => resyncs >= 2);
  assert.equal(inf.size, 1);
  await inf.stop();
});

test('waitForSync rejects when aborted', async () => {
  const api = fakeApi();
  api.state.listFails = 1000;
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch, backoff: { initialMs: 50, maxMs: 50 } });
  inf.start();
  const ctl = new AbortController();
  const waiting = inf.waitForSync(ctl.signal);
  ctl.abort(new Error('gave up'));
  await assert.rejects(waiting, /gave up/);
  await inf.stop();
});
