/**
 * Gives memory back once the agent goes quiet after a burst.
 *
 * V8 keeps the pages a garbage collection frees in a pool for reuse, resident, and releases them only in a
 * memory-reducing collection. V8's own memory reducer did not start one for an agent with ~20 MB of live
 * heap: after the bench's load and 110 first tokens the pool held 20–30 MB of freed pages, still resident
 * after minutes of idling, and the V8 heap's own figures (which leave the pool out) never showed it
 * (agent/README.md "## Memory").
 *
 * The collection pauses the JavaScript thread (45–110 ms with ~20 MB live on this project's bench machine),
 * and after it V8 recompiles much of the hot path, which cost the next seconds of load up to half again the
 * CPU per request (agent/README.md, "What V and the memory reducer show"). So it runs only when no connection
 * or request arrived for `quietLooks` check intervals in a row (a gap between bursts of a busy node is not
 * quiet), only when RSS grew by `minGrowthBytes` since the last one, and at most once per `minIntervalMs`.
 */
export interface MemoryReducerOptions {
  /** A memory-reducing collection (`gc({ type: 'major', flavor: 'last-resort' })`). */
  collect: () => void;
  rss: () => number;
  now: () => number;
  /** How often to look; a look with no activity since the last one counts as quiet. */
  checkIntervalMs: number;
  /** Quiet looks in a row before a collection (so quiet for about this many check intervals). */
  quietLooks: number;
  minGrowthBytes: number;
  minIntervalMs: number;
  onReduced?: (result: { rssBefore: number; rssAfter: number; pauseMs: number }) => void;
}

export class MemoryReducer {
  private activity_ = 0;
  private activityAtLastCheck = 0;
  private quietInARow = 0;
  /** RSS right after the last collection: the level growth is measured from (none yet: any growth counts). */
  private floor = 0;
  private lastCollection = -Infinity;
  private timer?: NodeJS.Timeout;

  constructor(private readonly opts: MemoryReducerOptions) {}

  /** One per new connection and per request: the only cost on those paths is this increment. */
  activity(): void {
    this.activity_++;
  }

  start(): void {
    this.timer = setInterval(() => this.check(), this.opts.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look (the timer's); returns whether it collected. */
  check(): boolean {
    const quiet = this.activity_ === this.activityAtLastCheck;
    this.activityAtLastCheck = this.activity_;
    this.quietInARow = quiet ? this.quietInARow + 1 : 0;
    if (this.quietInARow < this.opts.quietLooks) return false;
    const now = this.opts.now();
    if (now - this.lastCollection < this.opts.minIntervalMs) return false;
    const rssBefore = this.opts.rss();
    if (rssBefore - this.floor < this.opts.minGrowthBytes) return false;
    this.opts.collect();
    const after = this.opts.now();
    this.lastCollection = after;
    this.floor = this.opts.rss();
    this.opts.onReduced?.({ rssBefore, rssAfter: this.floor, pauseMs: after - now });
    return true;
  }
}

/** The memory-reducing collection, when the process runs with `--expose-gc` (the image does); else undefined. */
export function memoryReducingCollection(): (() => void) | undefined {
  const gc = globalThis.gc;
  if (!gc) return undefined;
  return () => void gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}
