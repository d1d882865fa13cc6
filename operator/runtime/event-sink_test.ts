import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BackgroundEventSink } from './event-sink.js';

/** A post function whose calls stay open until released. */
function gatedPost() {
  const started: string[] = [];
  const release: (() => void)[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const post = (reason: string) => {
    started.push(reason);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    return new Promise<void>((resolve) => release.push(() => {
      inFlight--;
      resolve();
    }));
  };
  return { post, started, release, max: () => maxInFlight };
}

describe('BackgroundEventSink', () => {
  it('returns before the Event is posted, posts at most `concurrency` at once, in order, and drains', async () => {
    const g = gatedPost();
    const sink = new BackgroundEventSink(g.post, { concurrency: 2 });
    for (const r of ['a', 'b', 'c', 'd']) await sink.emit(r); // resolves although nothing has been posted yet
    assert.deepEqual(g.started, ['a', 'b']);
    const drained = sink.drain(5000);
    while (g.release.length) g.release.shift()!();
    for (let i = 0; i < 10 && g.started.length < 4; i++) await new Promise((r) => setImmediate(r));
    while (g.release.length) g.release.shift()!();
    assert.equal(await drained, true);
    assert.deepEqual(g.started, ['a', 'b', 'c', 'd']);
    assert.equal(g.max(), 2);
  });

  it('drops Events beyond maxPending instead of growing without bound', async () => {
    const g = gatedPost();
    const sink = new BackgroundEventSink(g.post, { concurrency: 1, maxPending: 2 });
    for (const r of ['a', 'b', 'c', 'd', 'e']) await sink.emit(r); // a in flight, b and c wait, d and e dropped
    assert.equal(await drainReleasing(sink, g, 3), true);
    assert.deepEqual(g.started, ['a', 'b', 'c']);
  });

  it('counts every dropped Event (the metric) and takes new ones again once there is room', async () => {
    const g = gatedPost();
    let counted = 0;
    const sink = new BackgroundEventSink(g.post, { concurrency: 1, maxPending: 1, onDrop: () => counted++ });
    for (const r of ['a', 'b', 'c', 'd']) sink.emit(r); // a in flight, b waits, c and d dropped
    assert.equal(counted, 2);
    assert.equal(sink.dropped, 2);
    g.release.shift()!(); // a done: b goes out, the queue has room again
    await new Promise((r) => setImmediate(r));
    sink.emit('e');
    assert.equal(counted, 2);
    assert.equal(await drainReleasing(sink, g, 3), true);
    assert.deepEqual(g.started, ['a', 'b', 'e']);
  });

  it('a post that throws instead of rejecting is logged like a failure and does not stop the sink', async () => {
    const posted: string[] = [];
    const sink = new BackgroundEventSink((reason: string) => {
      posted.push(reason);
      if (reason === 'bad') throw new Error('thrown before any promise');
      return Promise.resolve();
    });
    assert.doesNotThrow(() => sink.emit('bad'));
    sink.emit('good');
    assert.equal(await sink.drain(5000), true);
    assert.deepEqual(posted, ['bad', 'good']);
  });

  it('a failing post never rejects emit and does not stop the sink', async () => {
    let posted = 0;
    const sink = new BackgroundEventSink(async (fail: boolean) => {
      posted++;
      if (fail) throw new Error('api server down');
    });
    await sink.emit(true);
    await sink.emit(false);
    assert.equal(await sink.drain(5000), true);
    assert.equal(posted, 2);
  });

  it('drain gives up at its deadline', async () => {
    const g = gatedPost();
    const sink = new BackgroundEventSink(g.post);
    await sink.emit('stuck');
    assert.equal(await sink.drain(20), false);
    g.release.shift()!();
  });
});

/** Drains `sink`, releasing every gated post as it starts, until `expected` posts have started. */
async function drainReleasing(sink: BackgroundEventSink<[string]>, g: ReturnType<typeof gatedPost>, expected: number): Promise<boolean> {
  const drained = sink.drain(5000);
  for (let i = 0; i < 20 && (g.release.length || g.started.length < expected); i++) {
    while (g.release.length) g.release.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  return drained;
}
