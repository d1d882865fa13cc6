import type { V1ConfigMap } from '@kubernetes/client-node';
import type { ApiServer } from '../../lib/k8s/api-server.js';
import { Informer, type ListFn, type WatchFn } from '../../lib/k8s/informer.js';
import type { Logger } from '../../lib/log.js';
import type { AgentMetrics } from '../metrics.js';
import { exceptionsFromConfigMap, matchException, type ExceptionDirectory, type ImdsException } from './exceptions.js';

/**
 * The one exceptions ConfigMap, watched by name (namespace-scoped list/watch with a metadata.name field
 * selector, so the agent reads nothing else). Absent ConfigMap: no exceptions. Malformed: no exceptions,
 * a warning naming the problem and a metric, until a valid version arrives.
 */
export class KubeExceptionDirectory implements ExceptionDirectory {
  readonly informer: Informer<V1ConfigMap>;
  private entries: readonly ImdsException[] = [];

  /** `source`: the list and watch to use instead of the API server's (tests). */
  constructor(
    api: ApiServer | undefined,
    private readonly ref: { namespace: string; name: string },
    private readonly metrics: AgentMetrics,
    private readonly logger: Logger,
    source?: { list: ListFn<V1ConfigMap>; watch: WatchFn },
  ) {
    this.informer = new Informer<V1ConfigMap>({
      path: `/api/v1/namespaces/${ref.namespace}/configmaps`,
      ...(source ?? { apiServer: api }),
      fieldSelector: `metadata.name=${ref.name}`,
      logger,
      name: 'imds-exceptions',
    });
    this.informer.addHandlers({
      onAdd: (cm) => this.apply(cm),
      onUpdate: (_old, cm) => this.apply(cm),
      onDelete: () => this.set([], 'deleted'),
    });
    this.metrics.imdsExceptions.set(0);
  }

  private apply(cm: V1ConfigMap): void {
    const parsed = exceptionsFromConfigMap(cm.data);
    if (parsed.ok) return this.set(parsed.entries, 'loaded');
    this.metrics.imdsExceptionErrors.inc();
    this.logger.warn('IMDS exceptions ConfigMap is malformed; no exceptions are honoured until it is fixed', {
      configMap: `${this.ref.namespace}/${this.ref.name}`,
      problem: parsed.problem,
    });
    this.set([], 'malformed');
  }

  private set(entries: readonly ImdsException[], why: string): void {
    this.entries = entries;
    this.metrics.imdsExceptions.set(entries.length);
    if (why !== 'malformed') this.logger.info('IMDS exceptions updated', { configMap: `${this.ref.namespace}/${this.ref.name}`, why, entries: entries.length });
  }

  match(pod: { namespace: string; labels: Record<string, string> }): ImdsException | undefined {
    if (!this.informer.hasSynced()) return undefined;
    return matchException(this.entries, pod);
  }

  hasSynced(): boolean {
    return this.informer.hasSynced();
  }

  isFresh(): boolean {
    return this.informer.isFresh();
  }
}
