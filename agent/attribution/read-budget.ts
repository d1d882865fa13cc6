/**
 * How many API server reads attribution may start: `perSource` per `windowMs` for one source address and
 * `total` per `windowMs` for the whole agent, as token buckets (a full bucket is a burst of that size, then
 * one read per window/limit). A source that would exceed either waits for a read or is refused; it never
 * gets a read for free.
 */
export interface ReadBudgetLimits {
  perSource: number;
  total: number;
  windowMs: number;
}

export type BudgetDecision = { ok: true } | { ok: false; scope: 'source' | 'total'; retryInMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets for this many sources at most; full ones (no information) are dropped first. */
const MAX_TRACKED_SOURCES = 8192;

export class ReadBudget {
  private readonly sources = new Map<string, Bucket>();
  private readonly all: Bucket;

  constructor(
    readonly limits: ReadBudgetLimits,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.all = { tokens: limits.total, at: this.now() };
  }

  /** Takes one read for `source` if both buckets have one; otherwise takes nothing and says when to retry. */
  take(source: string): BudgetDecision {
    const now = this.now();
    let mine = this.sources.get(source);
    if (!mine) mine = { tokens: this.limits.perSource, at: now };
    this.refill(mine, this.limits.perSource, now);
    this.refill(this.all, this.limits.total, now);
    if (mine.tokens < 1) return { ok: false, scope: 'source', retryInMs: this.waitFor(mine, this.limits.perSource) };
    if (this.all.tokens < 1) return { ok: false, scope: 'total', retryInMs: this.waitFor(this.all, this.limits.total) };
    mine.tokens -= 1;
    this.all.tokens -= 1;
    this.sources.delete(source);
    this.sources.set(source, mine);
    if (this.sources.size > MAX_TRACKED_SOURCES) this.prune(now);
    return { ok: true };
  }

  private refill(bucket: Bucket, limit: number, now: number): void {
    bucket.tokens = Math.min(limit, bucket.tokens + ((now - bucket.at) * limit) / this.limits.windowMs);
    bucket.at = now;
  }

  private waitFor(bucket: Bucket, limit: number): number {
    return Math.ceil(((1 - bucket.tokens) * this.limits.windowMs) / limit);
  }

  private prune(now: number): void {
    for (const [source, bucket] of this.sources) {
      this.refill(bucket, this.limits.perSource, now);
      if (bucket.tokens >= this.limits.perSource) this.sources.delete(source);
    }
    // Still too many (a flood of distinct sources, each mid-burst): forget the least recently used.
    for (const source of this.sources.keys()) {
      if (this.sources.size <= MAX_TRACKED_SOURCES) break;
      this.sources.delete(source);
    }
  }
}
