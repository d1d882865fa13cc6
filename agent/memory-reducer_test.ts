import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryReducer, type MemoryReducerOptions } from './memory-reducer.js';

const MB = 2 ** 20;

function reducerWith(overrides: Partial<MemoryReducerOptions> = {}) {
  const state = { rss: 120 * MB, now: 0, collections: 0, rssAfterCollection: 90 * MB };
  const reducer = new MemoryReducer({
    collect: () => {
      state.collections++;
      state.rss = state.rssAfterCollection;
    },
    rss: () => state.rss,
    now: () => state.now,
    checkIntervalMs: 5_000,
    quietLooks: 1,
    minGrowthBytes: 8 * MB,
    minIntervalMs: 60_000,
    ...overrides,
  });
  return { reducer, state };
}

describe('MemoryReducer', () => {
  it('collects at the first quiet look, and records the RSS it brought back', () => {
    const reported: { rssBefore: number; rssAfter: number }[] = [];
    const { reducer, state } = reducerWith({ onReduced: (r) => reported.push(r) });
    assert.equal(reducer.check(), true);
    assert.equal(state.collections, 1);
    assert.deepEqual(reported.map((r) => [r.rssBefore, r.rssAfter]), [[120 * MB, 90 * MB]]);
  });

  it('never collects while connections or requests keep arriving between looks', () => {
    const { reducer, state } = reducerWith();
    for (let i = 0; i < 20; i++) {
      reducer.activity();
      state.now += 5_000;
      assert.equal(reducer.check(), false);
    }
    assert.equal(state.collections, 0);
    state.now += 5_000;
    assert.equal(reducer.check(), true, 'the first look with no activity since the last one is quiet');
  });

  it('waits for quietLooks quiet looks in a row: a gap shorter than that between bursts is not quiet', () => {
    const { reducer, state } = reducerWith({ quietLooks: 6 });
    for (let burst = 0; burst < 5; burst++) {
      // Five quiet looks (a 25 s gap), then traffic again: never a collection.
      for (let look = 0; look < 5; look++) {
        state.now += 5_000;
        assert.equal(reducer.check(), false, `burst ${burst}, quiet look ${look + 1}`);
      }
      reducer.activity();
      state.now += 5_000;
      assert.equal(reducer.check(), false);
    }
    assert.equal(state.collections, 0);
    for (let look = 1; look < 6; look++) {
      state.now += 5_000;
      assert.equal(reducer.check(), false);
    }
    state.now += 5_000;
    assert.equal(reducer.check(), true, 'the sixth quiet look in a row collects');
    assert.equal(state.collections, 1);
  });

  it('does not collect again until RSS grew by the threshold over the level it left', () => {
    const { reducer, state } = reducerWith();
    reducer.check();
    state.now += 120_000;
    state.rss = 90 * MB + 8 * MB - 1;
    assert.equal(reducer.check(), false);
    state.rss = 90 * MB + 8 * MB;
    assert.equal(reducer.check(), true);
    assert.equal(state.collections, 2);
  });

  it('collects at most once per interval, however much RSS grew', () => {
    const { reducer, state } = reducerWith();
    reducer.check();
    state.rss = 200 * MB;
    state.now += 59_999;
    assert.equal(reducer.check(), false);
    state.now += 1;
    assert.equal(reducer.check(), true);
  });

  it('looks on its own timer once started, and stops looking when stopped', async () => {
    const { reducer, state } = reducerWith({ checkIntervalMs: 5 });
    reducer.start();
    const deadline = Date.now() + 5_000;
    while (state.collections === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    reducer.stop();
    assert.equal(state.collections, 1);
  });
});
