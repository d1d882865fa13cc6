import type { KubernetesObject } from '@kubernetes/client-node';
import { Counter, Histogram, type Registry } from 'prom-client';
import { objectKey, type Informer } from '../../lib/k8s/informer.js';
import type { Logger } from '../../lib/log.js';
import { WorkQueue, type WorkQueueOptions } from './queue.js';

export type ReconcileResult = { requeueAfterMs?: number } | void;

/**
 * Level-triggered and idempotent. Reads state from informer caches. Throwing means "retry with backoff".
 * `signal` aborts when a shutdown deadline passes or leadership is lost and the deadline passes.
 * `releaseWorker()` says the reconcile's bounded work (its calls to the external system) is over and only its
 * own Kubernetes writes remain: the worker then takes the next key while this one finishes. The key stays in
 * flight (never reconciled twice at once, its result and errors handled as usual) until the promise settles.
 */
export type Reconcile = (key: string, signal: AbortSignal, releaseWorker: () => void) => Promise<ReconcileResult>;

export interface ControllerOptions {
  name: string;
  reconcile: Reconcile;
  registry?: Registry;
  logger?: Logger;
  /** Queue tuning (backoff, rate limit); `name` and `registry` come from the controller. */
  queue?: Omit<WorkQueueOptions, 'name' | 'registry'>;
  /** How long `run` waits for in-flight reconciles after its signal aborts. */
  shutdownDeadlineMs?: number;
}

interface Watched {
  informer: Informer<KubernetesObject>;
  mapToKeys: (obj: KubernetesObject) => string[];
}

function reconcileMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  const total = 'podidentity_operator_reconcile_total';
  const duration = 'podidentity_operator_reconcile_duration_seconds';
  return {
    total:
      (registry?.getSingleMetric(total) as Counter<'controller' | 'result'> | undefined) ??
      new Counter({ name: total, help: 'Reconciles by result (success, requeue, error).', labelNames: ['controller', 'result'], registers }),
    duration:
      (registry?.getSingleMetric(duration) as Histogram<'controller'> | undefined) ??
      new Histogram({ name: duration, help: 'Reconcile duration.', labelNames: ['controller'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60], registers }),
  };
}

/**
 * Informers + a keyed work queue + a reconcile function. Events from watched informers become keys;
 * N workers reconcile keys, one key never on two workers at once, and a failing key backs off alone.
 */
export class Controller {
  readonly name: string;
  private readonly watched: Watched[] = [];
  private readonly metrics: ReturnType<typeof reconcileMetrics>;
  private current?: WorkQueue;

  constructor(private readonly opts: ControllerOptions) {
    this.name = opts.name;
    this.metrics = reconcileMetrics(opts.registry);
  }

  /**
   * Enqueues keys for every add, update (including resyncs) and delete on `informer`. Default keys are
   * the object's own key; pass `mapToKeys` to enqueue related objects (e.g. Pod → PodIdentities).
   */
  watch<T extends KubernetesObject>(informer: Informer<T>, mapToKeys: (obj: T) => string[] = (obj) => [objectKey(obj)]): this {
    const entry: Watched = { informer: informer as unknown as Informer<KubernetesObject>, mapToKeys: mapToKeys as (obj: KubernetesObject) => string[] };
    this.watched.push(entry);
    informer.addHandlers({
      onAdd: (obj) => this.enqueueFor(entry, obj),
      onUpdate: (oldObj, newObj) => {
        this.enqueueFor(entry, oldObj);
        this.enqueueFor(entry, newObj);
      },
      onDelete: (obj) => this.enqueueFor(entry, obj),
    });
    return this;
  }

  /** Queues `key` (ignored unless running). */
  enqueue(key: string): void {
    this.current?.add(key);
  }

  /**
   * Waits for the watched informers to sync (informers are started by the caller), enqueues every cached
   * object, then reconciles with `workers` workers until `signal` aborts. On abort it stops taking work and
   * waits up to `shutdownDeadlineMs` for in-flight reconciles. May be called again after it returns (for
   * example when leadership is regained).
   */
  async run(workers: number, signal: AbortSignal): Promise<void> {
    if (this.current) throw new Error(`controller ${this.name} is already running`);
    if (signal.aborted) return;
    try {
      await Promise.all(this.watched.map((w) => w.informer.waitForSync(signal)));
    } catch {
      return; // aborted before sync
    }
    const queue = new WorkQueue({ ...this.opts.queue, name: this.name, registry: this.opts.registry });
    this.current = queue;
    for (const w of this.watched) for (const obj of w.informer.list()) this.enqueueFor(w, obj);
    const hardStop = new AbortController();
    const finishing = new Set<Promise<void>>();
    const loops = Array.from({ length: Math.max(1, workers) }, () => this.worker(queue, hardStop.signal, finishing));
    this.opts.logger?.info('controller started', { controller: this.name, workers });
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const deadline = this.opts.shutdownDeadlineMs ?? 25_000;
    const clean = await queue.shutdown(deadline);
    if (!clean) {
      this.opts.logger?.warn('in-flight reconciles did not finish before the deadline; aborting them', { controller: this.name, deadlineMs: deadline });
      hardStop.abort(new Error('shutdown deadline passed'));
    }
    await Promise.race([Promise.all([...loops, ...finishing]), new Promise((r) => setTimeout(r, 1000).unref())]);
    this.current = undefined;
    this.opts.logger?.info('controller stopped', { controller: this.name, clean });
  }

  private enqueueFor(w: Watched, obj: KubernetesObject): void {
    if (!this.current) return; // not running (e.g. not the leader): run() enqueues everything at start
    let keys: string[];
    try {
      keys = w.mapToKeys(obj);
    } catch (err) {
      this.opts.logger?.error('mapToKeys threw', { controller: this.name, err });
      return;
    }
    for (const key of keys) this.current.add(key);
  }

  /**
   * Takes keys one at a time. A reconcile that releases the worker finishes beside the next key; each worker
   * keeps at most one such reconcile finishing (a second release waits for the first to settle), so released
   * work stays bounded when the API server is slow. `finishing` lets shutdown wait for them all.
   */
  private async worker(queue: WorkQueue, signal: AbortSignal, finishing: Set<Promise<void>>): Promise<void> {
    let finishingHere: Promise<void> | undefined;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      let release!: () => void;
      const released = new Promise<'released'>((resolve) => (release = () => resolve('released')));
      const run = this.reconcileOne(queue, key, signal, release);
      if ((await Promise.race([run.then(() => 'settled' as const), released])) === 'settled') continue;
      const tail = run.finally(() => finishing.delete(tail));
      finishing.add(tail);
      if (finishingHere) await finishingHere;
      finishingHere = tail;
    }
  }

  /** One reconcile of `key`, its result or error handled; never rejects. */
  private async reconcileOne(queue: WorkQueue, key: string, signal: AbortSignal, releaseWorker: () => void): Promise<void> {
    const started = performance.now();
    try {
      const result = await this.opts.reconcile(key, signal, releaseWorker);
      queue.forget(key);
      if (result?.requeueAfterMs !== undefined && result.requeueAfterMs >= 0) {
        queue.addAfter(key, result.requeueAfterMs);
        this.metrics.total.inc({ controller: this.name, result: 'requeue' });
      } else {
        this.metrics.total.inc({ controller: this.name, result: 'success' });
      }
    } catch (err) {
      this.metrics.total.inc({ controller: this.name, result: 'error' });
      const retryInMs = queue.addRateLimited(key);
      this.opts.logger?.warn('reconcile failed; will retry', { controller: this.name, key, err, retryInMs, retries: queue.numRequeues(key) });
    } finally {
      this.metrics.duration.observe({ controller: this.name }, (performance.now() - started) / 1000);
      queue.done(key);
    }
  }
}
