import { randomBytes } from 'node:crypto';
import type { CoreV1Event, KubernetesObject } from '@kubernetes/client-node';
import type { ApiServer } from '../../lib/k8s/api-server.js';
import { requestJson } from '../../lib/k8s/rest.js';
import type { Logger } from '../../lib/log.js';

export type EventType = 'Normal' | 'Warning';

/**
 * A core/v1 Event as sent: client-node's model, with its timestamps as the RFC 3339 strings the API server
 * reads (the model carries Dates, which only client-node's own serializer turns into that form).
 */
export type EventBody = Omit<CoreV1Event, 'firstTimestamp' | 'lastTimestamp' | 'eventTime'> & { firstTimestamp: string; lastTimestamp: string };

/** The two writes the recorder makes: a new Event, and a repeat's count and time on an existing one. */
export interface EventsApi {
  create(namespace: string, body: EventBody): Promise<void>;
  bump(namespace: string, name: string, count: number, lastTimestamp: string): Promise<void>;
}

/**
 * Events as raw requests over the API server's keep-alive pool. Converging a new PodIdentity posts one Event;
 * through client-node's typed API that POST cost more operator CPU than the finalizer and status patches
 * together (its request pipeline, a per-call undici agent, an HTTP/2 fetch stream: a CPU profile of converging
 * 1,000 PodIdentities), as the patches did before they went raw (runtime/merge-patch.ts).
 */
export function rawEventsApi(api: ApiServer): EventsApi {
  const events = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`;
  return {
    create: async (namespace, body) => void (await requestJson(api, 'POST', events(namespace), { body: { contentType: 'application/json', value: body } })),
    bump: async (namespace, name, count, lastTimestamp) =>
      void (await requestJson(api, 'PATCH', `${events(namespace)}/${encodeURIComponent(name)}`, {
        body: { contentType: 'application/json-patch+json', value: [{ op: 'replace', path: '/count', value: count }, { op: 'replace', path: '/lastTimestamp', value: lastTimestamp }] },
      })),
  };
}

/**
 * Records core/v1 Events about objects. A repeat of the same (object, type, reason, message) within
 * `dedupeWindowMs` bumps the existing Event's count instead of creating a new one. Recording never throws:
 * Events are best-effort and must not fail a reconcile.
 */
export class EventRecorder {
  private readonly recent = new Map<string, { name: string; namespace: string; count: number; first: string; at: number }>();

  constructor(
    private readonly api: EventsApi,
    private readonly component: string,
    private readonly opts: { logger?: Logger; dedupeWindowMs?: number; maxTracked?: number; now?: () => Date } = {},
  ) {}

  async record(obj: KubernetesObject, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = obj.metadata?.namespace || 'default';
    const now = (this.opts.now ?? (() => new Date()))();
    const stamp = now.toISOString();
    const dedupeKey = [obj.metadata?.uid ?? `${namespace}/${obj.metadata?.name}`, type, reason, message].join('\u0000');
    const window = this.opts.dedupeWindowMs ?? 10 * 60_000;
    const seen = this.recent.get(dedupeKey);
    try {
      if (seen && now.getTime() - seen.at < window) {
        seen.count++;
        seen.at = now.getTime();
        await this.api.bump(seen.namespace, seen.name, seen.count, stamp);
        return;
      }
      const name = `${obj.metadata?.name ?? 'object'}.${randomBytes(8).toString('hex')}`;
      const body: EventBody = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata?.name,
          namespace: obj.metadata?.namespace,
          uid: obj.metadata?.uid,
          resourceVersion: obj.metadata?.resourceVersion,
        },
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.component,
        count: 1,
        firstTimestamp: stamp,
        lastTimestamp: stamp,
      };
      await this.api.create(namespace, body);
      this.remember(dedupeKey, { name, namespace, count: 1, first: stamp, at: now.getTime() });
    } catch (err) {
      this.recent.delete(dedupeKey);
      this.opts.logger?.warn('could not record event', { reason, namespace, name: obj.metadata?.name, err });
    }
  }

  private remember(key: string, entry: { name: string; namespace: string; count: number; first: string; at: number }): void {
    this.recent.set(key, entry);
    const max = this.opts.maxTracked ?? 1000;
    while (this.recent.size > max) {
      const oldest = this.recent.keys().next().value;
      if (oldest === undefined) break;
      this.recent.delete(oldest);
    }
  }
}
