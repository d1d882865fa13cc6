import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { Informer, type WatchFn } from '../../lib/k8s/informer.js';
import { Controller } from './controller.js';

function staticInformer(names: string[]): { informer: Informer<KubernetesObject>; emit: (type: string, obj: KubernetesObject) => void } {
  let emitter: ((type: string, obj: unknown) => void) | undefined;
  const watch: WatchFn = async (_p, _q, onEvent) => {
    emitter = onEvent;
    return { abort: () => {} };
  };
  const informer = new Informer<KubernetesObject>({
    path: '/x',
    list: async () => ({ items: names.map((name, i) => ({ metadata: { name, namespace: 'ns', resourceVersion: String(i + 1) } })), metadata: { resourceVersion: '100' } }) as KubernetesListObject<KubernetesObject>,
    watch,
  });
  return { informer, emit: (type, obj) => emitter?.(type, obj) };
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('a throwing reconcile is retried with growing backoff until it succeeds', async () => {
  const { informer } = staticInformer(['a']);
  informer.start();
  const attempts: number[] = [];
  const registry = new Registry();
  const c = new Controller({
    name: 'retry',
    registry,
    reconcile: async () => {
      attempts.push(Date.now());
      if (attempts.length < 5) throw new Error('transient');
    },
  });
  c.watch(informer);
  const ctl = new AbortController();
  const running = c.run(2, ctl.signal);
  await until('5 attempts', () => attempts.length === 5);
  const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
  // Backoff 5, 10, 20, 40 ms (no jitter). Only lower bounds: a timer never fires early, but a busy machine
  // may fire any of them late, so comparing one gap with another would fail on a stall.
  const nominal = [5, 10, 20, 40];
  assert.ok(gaps.every((g, i) => g >= nominal[i]! - 1), `gaps ${gaps.join(',')} ms, each at least ${nominal.join(',')}`);
  ctl.abort();
  await running;
  await informer.stop();
  const text = await registry.metrics();
  assert.match(text, /podidentity_operator_reconcile_total\{controller="retry",result="error"\} 4/);
  assert.match(text, /podidentity_operator_reconcile_total\{controller="retry",result="success"\} 1/);
});

test('one failing key never slows the others', async () => {
  const { informer, emit } = staticInformer(['bad', 'good']);
  informer.start();
  let badAttempts = 0;
  const goodRuns: number[] = [];
  const c = new Controller({
    name: 'isolation',
    queue: { qps: 1000, burst: 1000 },
    reconcile: async (key) => {
      if (key === 'ns/bad') {
        badAttempts++;
        throw new Error('always fails');
      }
      goodRuns.push(Date.now());
    },
  });
  c.watch(informer);
  const ctl = new AbortController();
  const running = c.run(1, ctl.signal);
  await until('bad key has backed off several times', () => badAttempts >= 8);
  for (let i = 0; i < 20; i++) {
    const before = goodRuns.length;
    const t0 = Date.now();
    emit('MODIFIED', { metadata: { name: 'good', namespace: 'ns', resourceVersion: String(1000 + i) } });
    await until('good reconciled', () => goodRuns.length > before);
    assert.ok(Date.now() - t0 < 300, 'good key runs promptly although the failing key is backing off for seconds');
  }
  ctl.abort();
  await running;
  await informer.stop();
});

test('requeueAfterMs runs the key again after the delay', async () => {
  const { informer } = staticInformer(['a']);
  informer.start();
  const runs: number[] = [];
  const c = new Controller({
    name: 'requeue',
    reconcile: async () => {
      runs.push(Date.now());
      return runs.length < 3 ? { requeueAfterMs: 50 } : undefined;
    },
  });
  c.watch(informer);
  const ctl = new AbortController();
  const running = c.run(1, ctl.signal);
  await until('3 runs', () => runs.length === 3);
  assert.ok(runs[2]! - runs[1]! >= 45);
  ctl.abort();
  await running;
  await informer.stop();
});

test('shutdown lets in-flight reconciles finish; mapToKeys fans events out', async () => {
  const { informer } = staticInformer(['p1']);
  informer.start();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const started: string[] = [];
  const finished: string[] = [];
  const c = new Controller({
    name: 'drain',
    shutdownDeadlineMs: 5000,
    reconcile: async (key) => {
      started.push(key);
      await gate;
      finished.push(key);
    },
  });
  c.watch(informer, (obj) => [`owner-of-${obj.metadata?.name}`]);
  const ctl = new AbortController();
  const running = c.run(1, ctl.signal);
  await until('started', () => started.length === 1);
  assert.deepEqual(started, ['owner-of-p1']);
  ctl.abort();
  let returned = false;
  void running.then(() => (returned = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(returned, false, 'run waits for the in-flight reconcile');
  release();
  await running;
  assert.deepEqual(finished, ['owner-of-p1']);
  await informer.stop();
});

test('a reconcile that releases its worker finishes beside the next key; the key stays in flight and its error is retried', async () => {
  const { informer, emit } = staticInformer(['a', 'b', 'c']);
  informer.start();
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  let aRuns = 0;
  let concurrentA = 0;
  let maxConcurrentA = 0;
  const c = new Controller({
    name: 'release',
    queue: { baseDelayMs: 1, qps: 1000, burst: 1000 },
    reconcile: async (key, _signal, releaseWorker) => {
      started.push(key);
      if (key !== 'ns/a') return;
      aRuns++;
      concurrentA++;
      maxConcurrentA = Math.max(maxConcurrentA, concurrentA);
      try {
        releaseWorker();
        // What is left after the release (a status write, say) waits until the test lets it go.
        await new Promise<void>((resolve) => gates.set(`a${aRuns}`, resolve));
        if (aRuns === 1) throw new Error('status write failed');
      } finally {
        concurrentA--;
      }
    },
  });
  c.watch(informer);
  const ctl = new AbortController();
  const running = c.run(1, ctl.signal);
  // One worker: b and c run while a, released, is still finishing.
  await until('b and c reconciled while a finishes', () => started.includes('ns/b') && started.includes('ns/c'));
  assert.equal(aRuns, 1);
  // a changes meanwhile: it must not run again until its first reconcile settles.
  emit('MODIFIED', { metadata: { name: 'a', namespace: 'ns', resourceVersion: '200' } });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(aRuns, 1, 'a key is never reconciled twice at once');
  gates.get('a1')!(); // the first reconcile of a fails after its release: retried with backoff
  await until('a retried', () => aRuns === 2);
  gates.get('a2')!();
  assert.equal(maxConcurrentA, 1);
  ctl.abort();
  await running;
  await informer.stop();
});

test('each worker keeps at most one released reconcile finishing while it works on the next key', async () => {
  const names = ['a', 'b', 'c', 'd', 'e'];
  const { informer } = staticInformer(names);
  informer.start();
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const c = new Controller({
    name: 'bounded',
    queue: { qps: 1000, burst: 1000 },
    reconcile: async (key, _signal, releaseWorker) => {
      started.push(key);
      releaseWorker();
      await new Promise<void>((resolve) => gates.set(key, resolve));
    },
  });
  c.watch(informer);
  const ctl = new AbortController();
  const running = c.run(2, ctl.signal);
  // Two workers: each releases one key, takes a second, releases it too and then waits for its first.
  await until('four released reconciles', () => started.length === 4);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(started.length, 4, 'no fifth key while every worker has a released reconcile and a second one finishing');
  gates.get(started[0]!)!();
  await until('a fifth key once one finished', () => started.length === 5);
  for (const open of gates.values()) open();
  ctl.abort();
  await running;
  await informer.stop();
});
