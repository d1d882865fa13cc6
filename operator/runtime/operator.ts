import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { CoordinationV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { Informer, type InformerOptions } from '../../lib/k8s/informer.js';
import type { CustomObjectRef } from '../k8s/objects.js';
import type { Logger } from '../../lib/log.js';
import { Controller, type ControllerOptions, type Reconcile } from './controller.js';
import { LeaderElector, type LeadershipState } from './leader.js';
import { pooledApiClient } from '../../lib/k8s/pooled.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

/** A kind of object, addressed like the API does. `group` '' is the core group. */
export interface ResourceType {
  group: string;
  version: string;
  plural: string;
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  logger?: Logger;
  registry?: Registry;
  /** Absent: this process always reconciles. */
  leaderElection?: LeaderElectionOptions;
  /** How long in-flight reconciles may run after shutdown or lost leadership. Default 25 s. */
  shutdownDeadlineMs?: number;
}

export type WatchResourceOptions<T extends KubernetesObject> = Omit<InformerOptions<T>, 'path' | 'apiServer' | 'logger'> & {
  /** Watch one namespace only. */
  namespace?: string;
};

/** The API path of a collection. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const base = type.group ? `/apis/${type.group}/${type.version}` : `/api/${type.version}`;
  return namespace ? `${base}/namespaces/${namespace}/${type.plural}` : `${base}/${type.plural}`;
}

export function refFor(type: ResourceType, obj: KubernetesObject): CustomObjectRef {
  return { ...type, namespace: obj.metadata?.namespace, name: obj.metadata?.name ?? '' };
}

/**
 * A small facade in the spirit of @dot-i/k8s-operator (`watchResource`), built on per-key queues instead of
 * one global queue: errors thrown by reconcile are retried with backoff, watch errors restart the watch, and
 * deletes missed while disconnected are delivered.
 */
export class Operator {
  readonly kubeConfig: KubeConfig;
  readonly registry: Registry;
  readonly customObjects: CustomObjectsApi;
  readonly elector?: LeaderElector;
  private readonly informers: Informer<KubernetesObject>[] = [];
  private readonly controllers: { controller: Controller; workers: number }[] = [];
  private started = false;

  constructor(private readonly opts: OperatorOptions) {
    this.kubeConfig = opts.kubeConfig;
    this.registry = opts.registry ?? new Registry();
    this.customObjects = pooledApiClient(opts.kubeConfig, CustomObjectsApi);
    const le = opts.leaderElection;
    if (le) {
      this.elector = new LeaderElector({
        api: pooledApiClient(opts.kubeConfig, CoordinationV1Api),
        namespace: le.namespace,
        name: le.name,
        identity: le.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`,
        leaseDurationMs: le.leaseDurationMs,
        renewDeadlineMs: le.renewDeadlineMs,
        retryPeriodMs: le.retryPeriodMs,
        logger: opts.logger,
        onStartedLeading: (signal) => this.runControllers(signal),
      });
    }
  }

  /** An informer on a resource, started by `start()`. Share it between controllers. */
  watchResource<T extends KubernetesObject>(type: ResourceType, options: WatchResourceOptions<T> = {}): Informer<T> {
    if (this.started) throw new Error('watchResource must be called before start()');
    const { namespace, ...rest } = options;
    const informer = new Informer<T>({ ...rest, path: collectionPath(type, namespace), apiServer: kubeConfigApiServer(this.kubeConfig), logger: this.opts.logger, name: rest.name ?? type.plural });
    this.informers.push(informer as unknown as Informer<KubernetesObject>);
    return informer;
  }

  /** A controller run by `start()` (only while leading, with leader election). Wire events with `.watch()`. */
  addController(name: string, reconcile: Reconcile, options: { workers?: number; queue?: ControllerOptions['queue'] } = {}): Controller {
    if (this.started) throw new Error('addController must be called before start()');
    const controller = new Controller({
      name,
      reconcile,
      registry: this.registry,
      logger: this.opts.logger,
      queue: options.queue,
      shutdownDeadlineMs: this.opts.shutdownDeadlineMs,
    });
    this.controllers.push({ controller, workers: options.workers ?? 2 });
    return controller;
  }

  /** Caches synced and leadership known (a follower is ready too). For /readyz. */
  ready(): boolean {
    return this.informers.every((i) => i.hasSynced()) && (this.elector?.leadershipKnown() ?? true);
  }

  leadership(): LeadershipState {
    return this.elector ? this.elector.state() : 'leader';
  }

  /**
   * Starts every informer, then runs the controllers (when leading). Resolves after `signal` aborts and
   * in-flight work has drained (up to the shutdown deadline) and the lease has been released.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error('operator already started');
    this.started = true;
    for (const informer of this.informers) informer.start(signal);
    if (this.elector) await this.elector.run(signal);
    else await this.runControllers(signal);
    await Promise.all(this.informers.map((i) => i.stop()));
  }

  private async runControllers(signal: AbortSignal): Promise<void> {
    await Promise.all(this.controllers.map(({ controller, workers }) => controller.run(workers, signal)));
  }
}
