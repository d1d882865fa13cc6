import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { PerKeyBackoff, TokenBucket, WorkQueue } from './queue.js';

test('dedupes keys that are queued', async () => {
  const q = new WorkQueue({ name: 't' });
  q.add('a');
  q.add('b');
  q.add('a');
  assert.equal(q.len(), 2);
  assert.equal(await q.get(), 'a');
  assert.equal(await q.get(), 'b');
  await q.shutdown(10);
});

test('a key re-added while in flight is not handed out again until done, then runs once more', async () => {
  const q = new WorkQueue({ name: 't' });
  q.add('a');
  const key = await q.get();
  q.add('a');
  q.add('a');
  assert.equal(q.len(), 0, 'not queued while in flight');
  q.done(key!);
  assert.equal(q.len(), 1);
  assert.equal(await q.get(), 'a');
  q.done('a');
  assert.equal(q.len(), 0);
  await q.shutdown(10);
});

test('per-key backoff doubles from 5 ms and caps at 5 min; forget resets', () => {
  const b = new PerKeyBackoff(5, 300_000);
  const delays = Array.from({ length: 20 }, () => b.next('k'));
  assert.deepEqual(delays.slice(0, 5), [5, 10, 20, 40, 80]);
  assert.equal(Math.max(...delays), 300_000);
  assert.equal(delays.at(-1), 300_000);
  assert.equal(b.next('other'), 5, 'keys back off independently');
  b.forget('k');
  assert.equal(b.next('k'), 5);
});

test('token bucket allows a burst, then spaces at qps', () => {
  let now = 0;
  const bucket = new TokenBucket(10, 3, () => now);
  assert.deepEqual([bucket.reserve(), bucket.reserve(), bucket.reserve()], [0, 0, 0]);
  assert.equal(bucket.reserve(), 100);
  assert.equal(bucket.reserve(), 200);
  now = 1000; // refilled 10 tokens, capped at the burst (debt of 2 paid first)
  assert.equal(bucket.reserve(), 0);
});

test('addRateLimited uses the larger of backoff and rate limit', () => {
  const now = 0;
  const q = new WorkQueue({ name: 't', qps: 1, burst: 1, now: () => now });
  assert.equal(q.addRateLimited('a'), 5);
  assert.equal(q.addRateLimited('b'), 1000, 'the bucket is empty: rate limit wins');
  assert.equal(q.numRequeues('a'), 1);
  void q.shutdown(0);
});

test('addAfter delivers after the delay; the earliest pending delay wins', async () => {
  const q = new WorkQueue({ name: 't' });
  const t0 = Date.now();
  q.addAfter('a', 500);
  q.addAfter('a', 30);
  assert.equal(q.len(), 0);
  assert.equal(await q.get(), 'a');
  const waited = Date.now() - t0;
  assert.ok(waited >= 25 && waited < 480, `waited ${waited} ms`);
  q.done('a');
  await q.shutdown(10);
});

test('never runs one key on two workers at once (hammer)', async () => {
  const q = new WorkQueue({ name: 't' });
  const running = new Set<string>();
  let overlaps = 0;
  let runs = 0;
  const workers = Array.from({ length: 8 }, async () => {
    for (;;) {
      const key = await q.get();
      if (key === undefined) return;
      if (running.has(key)) overlaps++;
      running.add(key);
      runs++;
      await new Promise((r) => setTimeout(r, Math.random() * 2));
      running.delete(key);
      q.done(key);
    }
  });
  for (let i = 0; i < 2000; i++) {
    q.add(`k${i % 5}`);
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  while (q.len() > 0 || q.inFlight() > 0) await new Promise((r) => setTimeout(r, 5));
  await q.shutdown(1000);
  await Promise.all(workers);
  assert.equal(overlaps, 0);
  assert.ok(runs >= 5 && runs < 2000, `deduped: ${runs} runs for 2000 adds`);
});

test('shutdown stops handing out work and waits for in-flight items', async () => {
  const q = new WorkQueue({ name: 't' });
  q.add('a');
  q.add('b');
  const key = await q.get();
  let finished = false;
  const shutdown = q.shutdown(5000);
  assert.equal(await q.get(), undefined, 'no more work after shutdown');
  setTimeout(() => {
    finished = true;
    q.done(key!);
  }, 30);
  assert.equal(await shutdown, true);
  assert.ok(finished);
  q.add('c');
  assert.equal(q.len(), 1, 'queue contents ignored: b stays, c is dropped');
});

test('shutdown gives up at the deadline', async () => {
  const q = new WorkQueue({ name: 't' });
  q.add('a');
  await q.get();
  assert.equal(await q.shutdown(20), false);
});

test('metrics are registered with the prefix and the name label', async () => {
  const registry = new Registry();
  const q1 = new WorkQueue({ name: 'one', registry });
  const q2 = new WorkQueue({ name: 'two', registry });
  q1.add('a');
  q2.add('a');
  q2.add('b');
  await q1.get();
  q1.addRateLimited('a');
  q1.done('a');
  const text = await registry.metrics();
  assert.match(text, /podidentity_operator_workqueue_depth\{name="two"\} 2/);
  assert.match(text, /podidentity_operator_workqueue_retries_total\{name="one"\} 1/);
  assert.match(text, /podidentity_operator_workqueue_queue_duration_seconds_count\{name="one"\} 1/);
  assert.match(text, /podidentity_operator_workqueue_work_duration_seconds_count\{name="one"\} 1/);
  await q1.shutdown(0);
  await q2.shutdown(0);
});
