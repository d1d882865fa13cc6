import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { Informer, makeWatchFn, objectKey, type ListFn, type WatchFn } from './informer.js';
import { kubeConfigApiServer } from './kubeconfig.js';

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
  inf.addHandlers({ onDelete: (o) => deleted.push(objectKey(o)), onUpdate: (_, o) => updated.push(objectKey(o)) });
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
  inf.addHandlers({
    onAdd: () => {
      throw new Error('bad handler');
    },
  });
  let resyncs = 0;
  inf.addHandlers({
    onUpdate: (a, b) => {
      if (a === b) resyncs++;
    },
  });
  inf.start();
  await inf.waitForSync();
  await until('two resyncs', () => resyncs >= 2);
  assert.equal(inf.list().length, 1);
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

test('managedFields are dropped before caching, from lists and from watch events', async () => {
  const api = fakeApi();
  const managed = (o: Obj): Obj => ({ ...o, metadata: { ...o.metadata, managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': {} } }] } });
  api.state.items = [managed(obj('a', '5'))];
  const inf = new Informer<Obj>({ path: '/x', list: api.list, watch: api.watch });
  inf.start();
  await inf.waitForSync();
  assert.equal(inf.get('ns/a')?.metadata?.managedFields, undefined);
  await until('watch', () => api.watches.length === 1);
  api.watches[0]!.emit('ADDED', managed(obj('b', '6')));
  assert.equal(inf.get('ns/b')?.metadata?.managedFields, undefined);
  assert.equal(inf.get('ns/b')?.spec?.big?.length, 100, 'the rest of the object is kept');
  await inf.stop();
});

/** A kubeconfig for a plain-http API server on loopback (the watch function only reads the server and credentials). */
function httpKubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return kc;
}

async function fakeApiServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function stopServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

test('the watch function streams newline-delimited events with the kubeconfig credentials, then ends cleanly', async () => {
  let seen: { url?: string; auth?: string } = {};
  const api = await fakeApiServer((req, res) => {
    seen = { url: req.url, auth: req.headers.authorization };
    res.writeHead(200, { 'Content-Type': 'application/json' });
    const a = JSON.stringify({ type: 'ADDED', object: obj('a', '7') });
    // One event split across writes, two in one write: framing is by newline, not by chunk.
    res.write(a.slice(0, 10));
    res.write(a.slice(10) + '\n' + JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } }) + '\n');
    res.end(JSON.stringify({ type: 'DELETED', object: obj('a', '10') }) + '\n');
  });
  try {
    const watch = makeWatchFn(kubeConfigApiServer(httpKubeConfig(api.url)));
    const events: string[] = [];
    const done = await new Promise<unknown>((resolve) => {
      void watch('/api/v1/pods', { resourceVersion: '5', labelSelector: undefined }, (type, o) => events.push(`${type} ${(o as Obj).metadata?.resourceVersion}`), resolve);
    });
    assert.equal(done, null);
    assert.deepEqual(events, ['ADDED 7', 'BOOKMARK 9', 'DELETED 10']);
    const url = new URL(seen.url ?? '', api.url);
    assert.equal(url.pathname, '/api/v1/pods');
    assert.equal(url.searchParams.get('watch'), 'true');
    assert.equal(url.searchParams.get('resourceVersion'), '5');
    assert.equal(url.searchParams.has('labelSelector'), false);
    assert.equal(seen.auth, 'Bearer secret-token');
  } finally {
    await stopServer(api.server);
  }
});

test('the watch function reports an HTTP error with its status (410 relists); an abort ends it once, as an error', async () => {
  let gone = true;
  const api = await fakeApiServer((_req, res) => {
    if (gone) return void res.writeHead(410, { 'Content-Type': 'application/json' }).end('{"kind":"Status","code":410}');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('\n'); // stays open until aborted
  });
  try {
    const watch = makeWatchFn(kubeConfigApiServer(httpKubeConfig(api.url)));
    const err = await new Promise<unknown>((resolve) => void watch('/x', {}, () => undefined, resolve));
    assert.equal((err as { statusCode?: number }).statusCode, 410);

    gone = false;
    let calls = 0;
    let handle: { abort(): void } | undefined;
    const ended = new Promise<unknown>((resolve) => {
      void watch('/x', {}, () => undefined, (e) => {
        calls++;
        resolve(e);
      }).then((h) => (handle = h));
    });
    await until('watch handle', () => handle !== undefined);
    handle!.abort();
    assert.equal((await ended as Error | null)?.name, 'AbortError', 'an aborted watch is a dropped one, not a clean end');
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, 1);
  } finally {
    await stopServer(api.server);
  }
});
