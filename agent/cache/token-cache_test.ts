import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IssuedToken } from '../imds/protocol.js';
import { cacheKeyOf, TokenCache, type TokenCacheOptions } from './token-cache.js';

function setup(overrides: Partial<TokenCacheOptions> = {}) {
  let nowMs = 1_000_000_000;
  const events = { refreshes: [] as string[], evictions: 0, bypass: [] as boolean[] };
  const cache = new TokenCache({
    maxEntries: 10,
    safetyMarginSeconds: 300,
    refreshAheadSeconds: 600,
    bypassMinIntervalMs: 5000,
    now: () => nowMs,
    onRefresh: (o) => events.refreshes.push(o),
    onEvict: () => events.evictions++,
    onBypass: (h) => events.bypass.push(h),
    ...overrides,
  });
  let calls = 0;
  /** An upstream whose tokens live 3600 s from "now". */
  const upstream = (): Promise<IssuedToken> => {
    calls++;
    const n = calls;
    return Promise.resolve({ accessToken: `t${n}`, expiresOn: Math.floor(nowMs / 1000) + 3600, notBefore: Math.floor(nowMs / 1000) });
  };
  return { cache, events, upstream, calls: () => calls, advance: (s: number) => (nowMs += s * 1000) };
}

describe('TokenCache', () => {
  test('serves a hit until the safety margin before expiry, then fetches again', async () => {
    const { cache, upstream, calls, advance } = setup({ refreshAheadSeconds: 0 });
    assert.deepEqual((await cache.get('k', upstream)).hit, false);
    advance(3600 - 301);
    const hit = await cache.get('k', upstream);
    assert.equal(hit.hit, true);
    assert.equal(hit.token.accessToken, 't1');
    advance(2); // now inside the 300 s margin
    const miss = await cache.get('k', upstream);
    assert.equal(miss.hit, false);
    assert.equal(miss.token.accessToken, 't2');
    assert.equal(calls(), 2);
  });

  test('N concurrent misses for one key make one upstream call', async () => {
    const { cache, calls } = setup();
    let release!: (t: IssuedToken) => void;
    let n = 0;
    const slow = () => {
      n++;
      return new Promise<IssuedToken>((r) => (release = r));
    };
    const all = Promise.all(Array.from({ length: 50 }, () => cache.get('k', slow)));
    release({ accessToken: 'x', expiresOn: 2_000_000_000, notBefore: 0 });
    const results = await all;
    assert.equal(n, 1);
    assert.equal(calls(), 0);
    assert.ok(results.every((r) => r.token.accessToken === 'x' && !r.hit));
  });

  test('a failed fetch is shared by the waiters and not cached', async () => {
    const { cache, upstream } = setup();
    let n = 0;
    const failing = () => {
      n++;
      return Promise.reject(new Error('aad down'));
    };
    const results = await Promise.allSettled([cache.get('k', failing), cache.get('k', failing)]);
    assert.equal(n, 1);
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.equal(cache.size, 0);
    assert.equal((await cache.get('k', upstream)).token.accessToken, 't1');
  });

  test('a hit inside the refresh-ahead window refreshes in the background and keeps serving', async () => {
    const { cache, upstream, calls, advance, events } = setup();
    await cache.get('k', upstream);
    advance(3600 - 300 - 700); // 700 s before the margin: not yet in the 600 s window
    assert.equal((await cache.get('k', upstream)).hit, true);
    assert.equal(calls(), 1);
    advance(200); // 500 s before the margin: refresh ahead
    const during = await cache.get('k', upstream);
    assert.equal(during.hit, true);
    assert.equal(during.token.accessToken, 't1', 'the current token is served while refreshing');
    await new Promise((r) => setImmediate(r));
    assert.equal(calls(), 2);
    assert.deepEqual(events.refreshes, ['ok']);
    const after = await cache.get('k', upstream);
    assert.equal(after.token.accessToken, 't2');
    assert.equal(after.hit, true);
  });

  test('unused tokens are never refreshed', async () => {
    const { cache, upstream, calls, advance } = setup();
    await cache.get('k', upstream);
    advance(3500);
    assert.equal(calls(), 1);
  });

  test('bounded: the least recently used entry is evicted', async () => {
    const { cache, upstream, events } = setup({ maxEntries: 2 });
    await cache.get('a', upstream);
    await cache.get('b', upstream);
    await cache.get('a', upstream); // a is now the most recently used
    await cache.get('c', upstream);
    assert.equal(cache.size, 2);
    assert.equal(cache.has('b'), false);
    assert.ok(cache.has('a') && cache.has('c'));
    assert.equal(events.evictions, 1);
  });

  test('recency stays exact when the most recently used entry is hit again, evicted and stored anew', async () => {
    const { cache, upstream } = setup({ maxEntries: 2 });
    await cache.get('a', upstream);
    await cache.get('a', upstream); // already the most recently used: order unchanged
    await cache.get('b', upstream);
    await cache.get('a', upstream); // a moves past b
    await cache.get('a', upstream);
    await cache.get('c', upstream); // evicts b, the least recently used
    assert.ok(cache.has('a') && cache.has('c') && !cache.has('b'));
    await cache.get('a', upstream); // a moves past c
    await cache.get('d', upstream); // evicts c
    assert.ok(cache.has('a') && cache.has('d') && !cache.has('c'));
    await cache.get('d', upstream); // d is the newest: nothing moves
    await cache.get('e', upstream); // evicts a
    assert.ok(cache.has('d') && cache.has('e') && !cache.has('a'));
  });

  test('cache-busting: a principal over its share evicts its own least recently used token, never another principal’s', async () => {
    const { cache, upstream, events } = setup({ maxEntries: 10, maxEntriesPerPrincipal: 3 });
    const victim = cacheKeyOf('Federated|victim|ns/sa', 'https://vault.azure.net');
    await cache.get(victim, upstream);
    for (let i = 0; i < 50; i++) await cache.get(cacheKeyOf('Federated|attacker|ns/sa', `https://r${i}.example`), upstream);
    assert.ok(cache.has(victim), 'the other principal’s token survives');
    assert.equal(cache.size, 4);
    assert.ok(cache.has(cacheKeyOf('Federated|attacker|ns/sa', 'https://r49.example')));
    assert.equal(events.evictions, 47);
  });

  test('bypass_cache goes upstream at most once per interval per key', async () => {
    const { cache, upstream, calls, advance, events } = setup();
    await cache.get('k', upstream);
    assert.equal((await cache.get('k', upstream, { bypass: true })).token.accessToken, 't2');
    const limited = await cache.get('k', upstream, { bypass: true });
    assert.equal(limited.hit, true, 'over the limit: served from the cache');
    assert.equal(limited.token.accessToken, 't2');
    advance(5);
    assert.equal((await cache.get('k', upstream, { bypass: true })).token.accessToken, 't3');
    assert.equal(calls(), 3);
    assert.deepEqual(events.bypass, [true, false, true]);
    // Another key has its own allowance.
    assert.equal((await cache.get('other', upstream, { bypass: true })).hit, false);
  });

  test('a token that is already inside the margin is returned but not cached', async () => {
    const { cache } = setup();
    const short = () => Promise.resolve({ accessToken: 's', expiresOn: Math.floor(1_000_000_000 / 1000) + 60, notBefore: 0 });
    assert.equal((await cache.get('k', short)).token.accessToken, 's');
    assert.equal(cache.size, 0);
  });
});
