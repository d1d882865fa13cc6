import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { ApiServer } from './api-server.js';
import type { Logger } from '../log.js';
import { apiRequest, getJson, RawApiError } from './rest.js';
import { Backoff, sleep } from './backoff.js';

/*
 * Why not client-node's ListWatch / makeInformer (2.0.1): on any watch or list error other than 410 and the
 * client timeout it calls the error callbacks and stops for good (no restart, no backoff); it has no indexes,
 * no resync, no transform, no "synced" signal, and its update callback does not receive the old object.
 * Wrapping it would mean re-implementing its restart loop anyway, so this lists and watches with plain GETs
 * (rest.ts, node:https) and takes only the kubeconfig's credentials from client-node.
 */

/** `namespace/name` for namespaced objects, `name` for cluster-scoped ones. */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

export interface ListQuery {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
}

/** Lists one page of objects. The default is a raw GET on the informer's path. */
export type ListFn<T extends KubernetesObject> = (query: ListQuery, signal: AbortSignal) => Promise<KubernetesListObject<T>>;

/** Starts one watch request; `onDone` is called exactly once when it ends (with the error, if any). */
export type WatchFn = (
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (type: string, obj: unknown) => void,
  onDone: (err: unknown) => void,
) => Promise<{ abort(): void }>;

/** A list function for `path` (e.g. `/api/v1/pods`) that returns plain JSON, like the watch does. */
export function makeListFn<T extends KubernetesObject>(api: ApiServer, path: string): ListFn<T> {
  return (query, signal) => getJson<KubernetesListObject<T>>(api, path, { ...query }, signal);
}

/** No byte from a watch for this long (the server sends bookmarks and closes at timeoutSeconds): reconnect. */
const WATCH_INACTIVITY_MS = 30_000;

/** Named `TimeoutError` so the loop treats it as an inactivity timeout: reconnect from the last resourceVersion, no relist. */
class WatchInactiveError extends Error {
  constructor() {
    super(`no data from the watch for ${WATCH_INACTIVITY_MS / 1000} s`);
    this.name = 'TimeoutError';
  }
}

/**
 * The default watch: a GET with `watch=true`, newline-delimited JSON events, the API server's credentials
 * and the same keep-alive pool as lists. Built on node:https rather than client-node's `Watch`, which
 * imports client-node's whole generated API (tens of MB of code in every process that watches) and opens
 * a new connection pool per watch.
 */
export function makeWatchFn(api: ApiServer): WatchFn {
  return async (path, query, onEvent, onDone) => {
    const { url, transport, options: opts } = await apiRequest(api, 'GET', path, { ...query, watch: true });
    let finished = false;
    const finish = (err: unknown) => {
      if (finished) return;
      finished = true;
      onDone(err);
    };
    const req = transport.request(url, opts, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', finish);
        res.on('end', () => finish(Object.assign(new RawApiError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')), { statusCode: res.statusCode })));
        return;
      }
      res.setEncoding('utf8');
      let pending = '';
      res.on('data', (chunk: string) => {
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (!line.trim()) continue;
          let event: { type?: string; object?: unknown };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            // A line that is not JSON means the stream is not what we think: start over from the last good state.
            req.destroy(new Error('watch stream: malformed event'));
            return;
          }
          if (finished) return;
          onEvent(event.type ?? '', event.object);
        }
      });
      res.on('error', finish);
      res.on('close', () => finish(null));
    });
    // Covers connecting and, once the stream flows, silence between events.
    req.setTimeout(WATCH_INACTIVITY_MS, () => req.destroy(new WatchInactiveError()));
    req.on('error', finish);
    req.end();
    return {
      // As a dropped connection: an error, so the informer distrusts its cache until it relists (its own
      // stop() settles the watch before aborting it).
      abort() {
        req.destroy();
        finish(Object.assign(new Error('watch aborted'), { name: 'AbortError' }));
      },
    };
  };
}

export interface InformerOptions<T extends KubernetesObject> {
  /** Collection path, e.g. `/api/v1/pods` or `/apis/podidentity.dev/v1alpha1/podidentities`. */
  path: string;
  /** Needed unless both `list` and `watch` are given. */
  apiServer?: ApiServer;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Strips an object to what the consumer needs, before it is cached. Must keep `metadata.name`,
   * `metadata.namespace` and `metadata.resourceVersion`.
   */
  transform?: (obj: T) => T;
  /** Re-deliver every cached object as an update this often. 0 or absent: never. */
  resyncPeriodMs?: number;
  /** Page size for lists. */
  pageSize?: number;
  /** Server-side watch timeout; kept under the watch's 30 s inactivity timeout so the server closes cleanly. */
  watchTimeoutSeconds?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  list?: ListFn<T>;
  watch?: WatchFn;
  logger?: Logger;
  /** For log lines. */
  name?: string;
}

export interface InformerHandlers<T> {
  onAdd?: (obj: T) => void;
  onUpdate?: (oldObj: T, newObj: T) => void;
  /** The last state the cache knew; when the delete was seen only by a relist, that state may be stale. */
  onDelete?: (obj: T) => void;
}

type IndexFn<T> = (obj: T) => string[];

class GoneError extends Error {
  constructor() {
    super('resourceVersion too old (410 Gone)');
  }
}

function isGone(err: unknown): boolean {
  if (err instanceof GoneError) return true;
  const e = err as { statusCode?: number; code?: number } | null;
  return e?.statusCode === 410 || e?.code === 410;
}

function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'TimeoutError';
}

/**
 * A list+watch cache of one kind of object. List, then watch from the list's resourceVersion; relist on
 * 410; restart with capped exponential backoff on any error (it never gives up or exits); periodic resync.
 * Deletes seen only by a relist are delivered too. Handlers run synchronously and must not throw (errors
 * are logged and swallowed so one bad handler can't stop the cache).
 *
 * Objects are plain API JSON (timestamps are strings), not client-node model classes.
 */
export class Informer<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly indexers = new Map<string, { fn: IndexFn<T>; values: Map<string, Set<string>> }>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly listFn: ListFn<T>;
  private readonly watchFn: WatchFn;
  private readonly backoff: Backoff;
  private resourceVersion = '';
  private synced = false;
  /** False from a watch failure until the next successful list: the cache may miss changes meanwhile. */
  private fresh = false;
  private readonly syncWaiters = new Set<() => void>();
  private controller?: AbortController;
  private currentWatch?: { abort(): void };
  private resyncTimer?: NodeJS.Timeout;
  private loop?: Promise<void>;
  /** Counters for tests and metrics. */
  readonly stats = { lists: 0, watches: 0, errors: 0, relistsOnGone: 0 };

  constructor(private readonly opts: InformerOptions<T>) {
    if (!opts.list && !opts.apiServer) throw new Error('Informer needs apiServer or list');
    if (!opts.watch && !opts.apiServer) throw new Error('Informer needs apiServer or watch');
    this.listFn = opts.list ?? makeListFn<T>(opts.apiServer!, opts.path);
    this.watchFn = opts.watch ?? makeWatchFn(opts.apiServer!);
    this.backoff = new Backoff(opts.backoff?.initialMs ?? 500, opts.backoff?.maxMs ?? 30_000);
  }

  private get label(): string {
    return this.opts.name ?? this.opts.path;
  }

  /** Registers handlers. Objects already cached are delivered to `onAdd` at once. */
  addHandlers(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
    if (handlers.onAdd) for (const obj of this.cache.values()) this.call(() => handlers.onAdd!(obj));
  }

  /** Adds a named index; `fn` returns the index values an object is filed under. */
  addIndex(name: string, fn: IndexFn<T>): void {
    if (this.indexers.has(name)) throw new Error(`index ${name} already exists`);
    const values = new Map<string, Set<string>>();
    this.indexers.set(name, { fn, values });
    for (const [key, obj] of this.cache) this.indexAdd(values, fn, key, obj);
  }

  byIndex(name: string, value: string): T[] {
    const indexer = this.indexers.get(name);
    if (!indexer) throw new Error(`no index named ${name}`);
    const keys = indexer.values.get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const key of keys) {
      const obj = this.cache.get(key);
      if (obj) out.push(obj);
    }
    return out;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /**
   * True while the cache follows the server: listed, and watching without a failure since. Callers that
   * authorise from the cache (the agent) must not trust it while this is false.
   */
  isFresh(): boolean {
    return this.synced && this.fresh;
  }

  /** Resolves once the first list has been cached; rejects if `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.syncWaiters.delete(done);
        reject(signal?.reason instanceof Error ? signal.reason : new Error(`${this.label}: aborted before sync`));
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.add(done);
    });
  }

  /** Starts the list/watch loop in the background. Stops when `signal` aborts or `stop()` is called. */
  start(signal?: AbortSignal): void {
    if (this.controller) throw new Error(`${this.label}: informer already started`);
    const controller = new AbortController();
    this.controller = controller;
    signal?.addEventListener('abort', () => this.stop(), { once: true });
    if (signal?.aborted) controller.abort();
    if (this.opts.resyncPeriodMs && this.opts.resyncPeriodMs > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.opts.resyncPeriodMs);
      this.resyncTimer.unref();
    }
    this.loop = this.run(controller.signal);
  }

  /** Stops watching; resolves when the loop has exited. The cache keeps its contents. */
  async stop(): Promise<void> {
    this.controller?.abort();
    this.currentWatch?.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    await this.loop;
  }

  /** Re-delivers every cached object to `onUpdate(obj, obj)`. */
  resync(): void {
    for (const obj of this.cache.values()) this.emitUpdate(obj, obj);
  }

  private async run(signal: AbortSignal): Promise<void> {
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
          this.fresh = true;
        }
        const startedAt = Date.now();
        const { events } = await this.watchOnce(signal);
        // A watch that ends at once without events is as bad as an error: don't hot-loop on it.
        if (events === 0 && Date.now() - startedAt < 1000 && !signal.aborted) {
          await sleep(this.backoff.next(), signal);
        } else {
          this.backoff.reset();
        }
      } catch (err) {
        if (signal.aborted) break;
        if (isTimeout(err)) continue; // client-side inactivity timeout: reconnect from the last resourceVersion
        // Until a relist, changes made while the watch was broken may be missing from the cache.
        this.fresh = false;
        needList = true;
        if (isGone(err)) {
          this.stats.relistsOnGone++;
          this.opts.logger?.info('watch resourceVersion expired; relisting', { informer: this.label });
          continue;
        }
        this.stats.errors++;
        const delay = this.backoff.next();
        this.opts.logger?.warn('list/watch failed; retrying', { informer: this.label, err, retryInMs: delay });
        await sleep(delay, signal);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    this.stats.lists++;
    const fresh = new Map<string, T>();
    let cont: string | undefined;
    let resourceVersion: string;
    do {
      const page = await this.listFn(
        {
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
          limit: this.opts.pageSize ?? 500,
          continue: cont,
        },
        signal,
      );
      for (const item of page.items ?? []) {
        const obj = this.prepare(item);
        fresh.set(objectKey(obj), obj);
      }
      // Raw JSON says `continue`; client-node's model class calls it `_continue`.
      const meta = page.metadata as { continue?: string; _continue?: string } | undefined;
      cont = meta?.continue || meta?._continue || undefined;
      resourceVersion = page.metadata?.resourceVersion ?? '';
    } while (cont);
    if (signal.aborted) return;
    // Deletes that happened while we were not watching: the object is cached but absent from the list.
    for (const [key, old] of [...this.cache]) if (!fresh.has(key)) this.remove(key, old);
    for (const [key, obj] of fresh) this.upsert(key, obj);
    this.resourceVersion = resourceVersion;
    this.markSynced();
  }

  private watchOnce(signal: AbortSignal): Promise<{ events: number }> {
    this.stats.watches++;
    return new Promise((resolve, reject) => {
      let events = 0;
      let gone = false;
      let settled = false;
      const query = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.opts.watchTimeoutSeconds ?? 20 + Math.floor(Math.random() * 8),
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      };
      const onEvent = (type: string, raw: unknown) => {
        if (settled || signal.aborted) return;
        events++;
        if (type === 'ERROR') {
          const status = raw as { code?: number; message?: string };
          if (status.code === 410) gone = true;
          else this.opts.logger?.warn('watch error event', { informer: this.label, code: status.code, message: status.message });
          handle?.abort();
          return;
        }
        const obj = raw as T;
        const rv = obj.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.resourceVersion = rv;
          return;
        }
        const prepared = this.prepare(obj);
        const key = objectKey(prepared);
        if (type === 'ADDED' || type === 'MODIFIED') this.upsert(key, prepared);
        else if (type === 'DELETED') {
          const cached = this.cache.get(key);
          if (cached) this.remove(key, prepared);
        }
        if (rv) this.resourceVersion = rv;
      };
      const onDone = (err: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        this.currentWatch = undefined;
        if (gone) reject(new GoneError());
        else if (err && !signal.aborted) reject(err);
        else resolve({ events });
      };
      let handle: { abort(): void } | undefined;
      // Stopping must not depend on the watch implementation honouring abort().
      const onAbort = () => onDone(null);
      signal.addEventListener('abort', onAbort, { once: true });
      this.watchFn(this.opts.path, query, onEvent, onDone).then(
        (h) => {
          handle = h;
          if (!settled) this.currentWatch = h;
          if (signal.aborted) h.abort();
        },
        (err: unknown) => onDone(err ?? new Error('watch failed to start')),
      );
    });
  }

  private prepare(obj: T): T {
    // Server-side-apply bookkeeping, often larger than the rest of the object, and read by no consumer: an
    // update that omits it leaves it unchanged on the server. The object is fresh from JSON.parse, ours to trim.
    if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
    return this.opts.transform ? this.opts.transform(obj) : obj;
  }

  private upsert(key: string, obj: T): void {
    const old = this.cache.get(key);
    if (old && old.metadata?.resourceVersion && old.metadata.resourceVersion === obj.metadata?.resourceVersion) return;
    this.cache.set(key, obj);
    for (const { fn, values } of this.indexers.values()) {
      if (old) this.indexRemove(values, fn, key, old);
      this.indexAdd(values, fn, key, obj);
    }
    if (old) this.emitUpdate(old, obj);
    else for (const h of this.handlers) if (h.onAdd) this.call(() => h.onAdd!(obj));
  }

  private remove(key: string, lastKnown: T): void {
    const old = this.cache.get(key);
    if (!old) return;
    this.cache.delete(key);
    for (const { fn, values } of this.indexers.values()) this.indexRemove(values, fn, key, old);
    for (const h of this.handlers) if (h.onDelete) this.call(() => h.onDelete!(lastKnown));
  }

  private emitUpdate(oldObj: T, newObj: T): void {
    for (const h of this.handlers) if (h.onUpdate) this.call(() => h.onUpdate!(oldObj, newObj));
  }

  private indexAdd(values: Map<string, Set<string>>, fn: IndexFn<T>, key: string, obj: T): void {
    for (const value of this.safeIndex(fn, obj)) {
      let keys = values.get(value);
      if (!keys) values.set(value, (keys = new Set()));
      keys.add(key);
    }
  }

  private indexRemove(values: Map<string, Set<string>>, fn: IndexFn<T>, key: string, obj: T): void {
    for (const value of this.safeIndex(fn, obj)) {
      const keys = values.get(value);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) values.delete(value);
    }
  }

  private safeIndex(fn: IndexFn<T>, obj: T): string[] {
    try {
      return fn(obj);
    } catch (err) {
      this.opts.logger?.error('index function threw', { informer: this.label, err });
      return [];
    }
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.logger?.error('informer handler threw', { informer: this.label, err });
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const done of this.syncWaiters) done();
    this.syncWaiters.clear();
  }
}
