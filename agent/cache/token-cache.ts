import type { IssuedToken } from '../imds/protocol.js';

/** Separates a key's principal (who the token is for) from its resource; neither can contain it. */
const SEPARATOR = '\u0000';

/** The cache key of a token for `principal` (identity and the pod's service account, in both modes) and `resource`. */
export function cacheKeyOf(principal: string, resource: string): string {
  return `${principal}${SEPARATOR}${resource}`;
}

function principalOf(key: string): string {
  const i = key.indexOf(SEPARATOR);
  return i < 0 ? key : key.slice(0, i);
}

export interface TokenCacheOptions {
  maxEntries: number;
  /**
   * Tokens one principal may hold in the cache; its own least recently used token makes room. So a pod
   * asking for ever more resources evicts its own tokens, never other pods'. Default: `maxEntries`.
   */
  maxEntriesPerPrincipal?: number;
  /** A token is served until this long before it expires. */
  safetyMarginSeconds: number;
  /** A hit within this long before the safety margin starts a background refresh. */
  refreshAheadSeconds: number;
  /** At most one honoured bypass per key in this interval; others are served from the cache. */
  bypassMinIntervalMs: number;
  /** Milliseconds; injectable for tests. */
  now?: () => number;
  onRefresh?: (outcome: 'ok' | 'error') => void;
  onEvict?: () => void;
  onSize?: (size: number) => void;
  onBypass?: (honoured: boolean) => void;
  /** Background refresh failures (the cached token keeps being served until its margin). */
  onRefreshError?: (key: string, err: unknown) => void;
}

export interface CacheResult {
  token: IssuedToken;
  hit: boolean;
}

interface Entry {
  token: IssuedToken;
}

/**
 * Tokens by key (identity + resource). It knows nothing about who may ask: callers authorise first, on
 * every request, and only then call `get`.
 *
 * - served until `safetyMarginSeconds` before expiry;
 * - a hit close to that point refreshes the token in the background (tokens nobody uses are never
 *   refreshed, so nothing is fetched for pods that are gone);
 * - single-flight: concurrent misses for one key share one upstream call;
 * - bounded: least recently used entries are evicted.
 */
export class TokenCache {
  /** Insertion order is recency order: a hit re-inserts. */
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<IssuedToken>>();
  private readonly lastBypass = new Map<string, number>();
  private readonly perPrincipal = new Map<string, number>();
  /** The entry inserted last (the end of the recency order), while it is still in the map. */
  private newest: Entry | undefined;
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  async get(key: string, issue: () => Promise<IssuedToken>, { bypass = false } = {}): Promise<CacheResult> {
    if (bypass) {
      const honoured = this.allowBypass(key);
      this.options.onBypass?.(honoured);
      if (honoured) return { token: await this.fetchOnce(key, issue), hit: false };
    }
    const hit = this.hit(key, issue);
    if (hit) return { token: hit, hit: true };
    if (this.entries.has(key)) {
      this.remove(key);
      this.options.onSize?.(this.entries.size);
    }
    return { token: await this.fetchOnce(key, issue), hit: false };
  }

  /**
   * The cached token for `key` if it may still be served (refreshing it ahead in the background like `get`),
   * without a promise; undefined when `get` would go upstream. Never for `bypass_cache` requests.
   */
  hit(key: string, issue: () => Promise<IssuedToken>): IssuedToken | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    const stopServingAt = entry.token.expiresOn * 1000 - this.options.safetyMarginSeconds * 1000;
    if (now >= stopServingAt) return undefined;
    this.touch(key, entry);
    if (now >= stopServingAt - this.options.refreshAheadSeconds * 1000) this.refreshInBackground(key, issue);
    return entry.token;
  }

  /**
   * Makes `key` the most recently used. Skipped when it already is: a Map delete shrinks (rehashes and
   * reallocates) a small table and the set grows it back, which was a third of a cached answer's own CPU for
   * a pod polling its token.
   */
  private touch(key: string, entry: Entry): void {
    if (this.newest === entry) return;
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.newest = entry;
  }

  /** True when this bypass may go upstream; records it. */
  private allowBypass(key: string): boolean {
    const now = this.now();
    const last = this.lastBypass.get(key);
    if (last !== undefined && now - last < this.options.bypassMinIntervalMs) return false;
    if (this.lastBypass.size >= this.options.maxEntries * 2) this.lastBypass.clear();
    this.lastBypass.set(key, now);
    return true;
  }

  private refreshInBackground(key: string, issue: () => Promise<IssuedToken>): void {
    if (this.inflight.has(key)) return;
    this.fetchOnce(key, issue).then(
      () => this.options.onRefresh?.('ok'),
      (err: unknown) => {
        this.options.onRefresh?.('error');
        this.options.onRefreshError?.(key, err);
      },
    );
  }

  private fetchOnce(key: string, issue: () => Promise<IssuedToken>): Promise<IssuedToken> {
    let p = this.inflight.get(key);
    if (!p) {
      p = issue()
        .then((token) => {
          this.store(key, token);
          return token;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private store(key: string, token: IssuedToken): void {
    // A token already inside the margin would never be served from here; don't let it evict a useful one.
    if (this.now() >= token.expiresOn * 1000 - this.options.safetyMarginSeconds * 1000) return;
    const who = principalOf(key);
    if (!this.entries.has(key)) {
      const held = this.perPrincipal.get(who) ?? 0;
      if (held >= (this.options.maxEntriesPerPrincipal ?? this.options.maxEntries)) {
        for (const k of this.entries.keys()) {
          if (principalOf(k) !== who) continue;
          this.remove(k);
          this.options.onEvict?.();
          break;
        }
      }
      this.perPrincipal.set(who, (this.perPrincipal.get(who) ?? 0) + 1);
    }
    const entry = { token };
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.newest = entry;
    while (this.entries.size > this.options.maxEntries) {
      this.remove(this.entries.keys().next().value as string);
      this.options.onEvict?.();
    }
    this.options.onSize?.(this.entries.size);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    if (entry === this.newest) this.newest = undefined;
    const who = principalOf(key);
    const held = (this.perPrincipal.get(who) ?? 1) - 1;
    if (held <= 0) this.perPrincipal.delete(who);
    else this.perPrincipal.set(who, held);
  }
}
