import type { Logger } from '../../lib/log.js';

export interface EventSinkOptions {
  /** Events posted at once. */
  concurrency?: number;
  /** Events waiting beyond this are dropped (with one warning per burst), as client-go's broadcaster does. */
  maxPending?: number;
  logger?: Logger;
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
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly post: (...args: A) => Promise<void>,
    private readonly opts: EventSinkOptions = {},
  ) {}

  /** Queues one Event; resolves at once. */
  emit(...args: A): Promise<void> {
    if (this.pending.length >= (this.opts.maxPending ?? 1000)) {
      if (!this.dropping) this.opts.logger?.warn('too many Events waiting to be posted; dropping new ones', { pending: this.pending.length });
      this.dropping = true;
      return Promise.resolve();
    }
    this.dropping = false;
    this.pending.push(args);
    this.pump();
    return Promise.resolve();
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

  private pump(): void {
    while (this.active < (this.opts.concurrency ?? 2) && this.pending.length) {
      const args = this.pending.shift()!;
      this.active++;
      void this.post(...args)
        .catch((err: unknown) => this.opts.logger?.warn('could not record event', { err }))
        .finally(() => {
          this.active--;
          this.pump();
          if (this.active === 0 && this.pending.length === 0) for (const idle of this.idleWaiters.splice(0)) idle();
        });
    }
  }
}
