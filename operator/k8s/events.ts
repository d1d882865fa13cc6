import { randomBytes } from 'node:crypto';
import type { CoreV1Api, CoreV1Event, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';

export type EventType = 'Normal' | 'Warning';

/**
 * Records core/v1 Events about objects. A repeat of the same (object, type, reason, message) within
 * `dedupeWindowMs` bumps the existing Event's count instead of creating a new one. Recording never throws:
 * Events are best-effort and must not fail a reconcile.
 */
export class EventRecorder {
  private readonly recent = new Map<string, { name: string; namespace: string; count: number; first: string; at: number }>();

  constructor(
    private readonly api: CoreV1Api,
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
        await this.api.patchNamespacedEvent(
          { name: seen.name, namespace: seen.namespace, body: [{ op: 'replace', path: '/count', value: seen.count }, { op: 'replace', path: '/lastTimestamp', value: stamp }] },
        );
        return;
      }
      const name = `${obj.metadata?.name ?? 'object'}.${randomBytes(8).toString('hex')}`;
      const body: CoreV1Event = {
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
        firstTimestamp: now,
        lastTimestamp: now,
      };
      await this.api.createNamespacedEvent({ namespace, body });
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
