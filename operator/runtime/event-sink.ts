import type { Logger } from '../../lib/log.js';

export interface EventSinkOptions {
  /** Events posted at once. */
  concurrency?: number;
  /** Events waiting beyond this are dropped (with one warning per burst), as client-go's broadcaster does. */
  maxPending?: number;
  logger?: Logger;
  /** Called once per Event dropped because the queue was full (a metric counts them). */
  onDrop?: () => void;
}

/**
 * Posts Events in the background. An Event is best-effort, so a reconcile must not wait for its round trip
 * to the API server (two per new PodIdentity would otherwise hold a worker as long as an ARM write), and a
 * slow or unreachable API server must not grow memory without bound.
 */
export class BackgroundEventSink<A extends unknown[]> {
  private readonly pending: A[] = [];
  private active = 0;
  private dropping = false;
  private droppedTotal = 0;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly post: (...args: A) => Promise<void>,
    private readonly opts: EventSinkOptions = {},
  ) {}

  /** Events dropped so far because the queue was full. */
  get dropped(): number {
    return this.droppedTotal;
  }

  /** Queues one Event and returns at once; never throws. */
  emit(...args: A): void {
    if (this.pending.length >= (this.opts.maxPending ?? 1000)) {
      if (!this.dropping) this.opts.logger?.warn('too many Events waiting to be posted; dropping new ones', { pending: this.pending.length });
      this.dropping = true;
      this.droppedTotal++;
      this.opts.onDrop?.();
      return;
    }
    this.dropping = false;
    this.pending.push(args);
    this.pump();
  }

  /** Waits until everything queued is posted, or `deadlineMs` passes. Resolves true when drained. */
  drain(deadlineMs: number): Promise<boolean> {
    if (this.active === 0 && this.pending.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), deadlineMs);
      timer.unref?.();
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Events queued or being posted. */
  get backlog(): number {
    return this.pending.length + this.active;
  }

  /** A post that throws before returning its promise counts as one that rejects. */
  private start(args: A): Promise<void> {
    try {
      return this.post(...args);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private pump(): void {
    while (this.active < (this.opts.concurrency ?? 2) && this.pending.length) {
      const args = this.pending.shift()!;
      this.active++;
      void this.start(args)
        .catch((err: unknown) => this.opts.logger?.warn('could not record event', { err }))
        .finally(() => {
          this.active--;
          this.pump();
          if (this.active === 0 && this.pending.length === 0) for (const idle of this.idleWaiters.splice(0)) idle();
        });
    }
  }
}
