import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Overall limit on retries, shared by every key: a token bucket. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Reserves one token and returns how long to wait before using it (0 if one is available now). */
  reserve(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
  }
}

/** Per-key exponential backoff: base * 2^failures, capped. */
export class PerKeyBackoff {
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  next(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(n, 40));
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}

export interface WorkQueueOptions {
  /** The `name` label on the metrics. */
  name: string;
  /** Registers the metrics here (shared metric objects if several queues use one registry). */
  registry?: Registry;
  /** Per-key backoff; defaults 5 ms → 5 min. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall retry rate limit; defaults 10/s with a burst of 100. */
  qps?: number;
  burst?: number;
  now?: () => number;
}

const PREFIX = 'podidentity_operator_workqueue_';

function metric<M>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => M): M {
  const existing = registry?.getSingleMetric(name);
  return (existing as M | undefined) ?? make(registry ? [registry] : []);
}

function makeMetrics(registry: Registry | undefined) {
  return {
    depth: metric(registry, `${PREFIX}depth`, (registers) => new Gauge({ name: `${PREFIX}depth`, help: 'Keys waiting to be processed.', labelNames: ['name'], registers })),
    adds: metric(registry, `${PREFIX}adds_total`, (registers) => new Counter({ name: `${PREFIX}adds_total`, help: 'Keys added (before deduplication).', labelNames: ['name'], registers })),
    retries: metric(registry, `${PREFIX}retries_total`, (registers) => new Counter({ name: `${PREFIX}retries_total`, help: 'Keys requeued with backoff after a failure.', labelNames: ['name'], registers })),
    latency: metric(registry, `${PREFIX}queue_duration_seconds`, (registers) =>
      new Histogram({ name: `${PREFIX}queue_duration_seconds`, help: 'Time a key waits in the queue before a worker takes it.', labelNames: ['name'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60], registers }),
    ),
    work: metric(registry, `${PREFIX}work_duration_seconds`, (registers) =>
      new Histogram({ name: `${PREFIX}work_duration_seconds`, help: 'Time spent processing one key.', labelNames: ['name'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60], registers }),
    ),
  };
}

/**
 * A keyed work queue with client-go's guarantees: a key is queued at most once; a key is never handed to
 * two workers at once (re-added while in flight, it is marked dirty and queued again on `done`); retries
 * wait max(per-key exponential backoff, overall token bucket).
 */
export class WorkQueue {
  readonly name: string;
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly queuedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private readonly idleWaiters = new Set<() => void>();
  private readonly backoff: PerKeyBackoff;
  private readonly bucket: TokenBucket;
  private readonly metrics: ReturnType<typeof makeMetrics>;
  private readonly now: () => number;
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.now = opts.now ?? Date.now;
    this.backoff = new PerKeyBackoff(opts.baseDelayMs ?? 5, opts.maxDelayMs ?? 300_000);
    this.bucket = new TokenBucket(opts.qps ?? 10, opts.burst ?? 100, this.now);
    this.metrics = makeMetrics(opts.registry);
    // Every series exists from the start, so rate() also counts a queue's first retry.
    this.metrics.depth.set({ name: this.name }, 0);
    this.metrics.adds.inc({ name: this.name }, 0);
    this.metrics.retries.inc({ name: this.name }, 0);
  }

  /** Queues `key` now, unless it is already queued. Ignored after shutdown. */
  add(key: string): void {
    if (this.shuttingDown) return;
    this.metrics.adds.inc({ name: this.name });
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // re-queued by done()
    this.push(key);
  }

  /** Queues `key` after `delayMs` (an earlier pending delay for the same key wins). */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = this.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { at, timer });
  }

  /** Queues `key` after its backoff (or the overall rate limit, whichever is longer). Returns the delay. */
  addRateLimited(key: string): number {
    const delay = Math.max(this.backoff.next(key), this.bucket.reserve());
    this.metrics.retries.inc({ name: this.name });
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets `key`'s backoff (call after it succeeds). */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  numRequeues(key: string): number {
    return this.backoff.retries(key);
  }

  /** The next key, marked in flight; `undefined` once the queue shuts down. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks `key` finished; if it was re-added meanwhile, queues it again. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    if (started !== undefined) this.metrics.work.observe({ name: this.name }, (this.now() - started) / 1000);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    if (this.processing.size === 0) for (const idle of this.idleWaiters) idle();
  }

  len(): number {
    return this.queue.length;
  }

  inFlight(): number {
    return this.processing.size;
  }

  /**
   * Stops handing out work, drops delayed keys, and waits for in-flight keys to be `done` or for the
   * deadline. Resolves true if everything in flight finished.
   */
  async shutdown(deadlineMs: number): Promise<boolean> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const getter of this.getters.splice(0)) getter(undefined);
    if (this.processing.size === 0) return true;
    return new Promise<boolean>((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(idle);
        resolve(ok);
      };
      const idle = () => finish(true);
      const timer = setTimeout(() => finish(false), deadlineMs);
      this.idleWaiters.add(idle);
    });
  }

  private push(key: string): void {
    this.queuedAt.set(key, this.now());
    const getter = this.getters.shift();
    if (getter) getter(this.take(key));
    else {
      this.queue.push(key);
      this.metrics.depth.set({ name: this.name }, this.queue.length);
    }
  }

  private take(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const queued = this.queuedAt.get(key);
    this.queuedAt.delete(key);
    const now = this.now();
    if (queued !== undefined) this.metrics.latency.observe({ name: this.name }, (now - queued) / 1000);
    this.startedAt.set(key, now);
    this.metrics.depth.set({ name: this.name }, this.queue.length);
    return key;
  }
}
