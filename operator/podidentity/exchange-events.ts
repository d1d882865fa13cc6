/**
 * The agents' FirstTokenExchange Events, as the operator watches them: only those Events (a field selector,
 * so the cache holds nothing else), slimmed to what propagation needs.
 */
import type { CoreV1Event } from '@kubernetes/client-node';
import { EVENT_FIRST_TOKEN_EXCHANGE, PODIDENTITY_KIND } from '../../lib/api/types.js';
import type { ExchangeReport } from './propagation.js';

/** Mirrors the agent's annotation (agent/issuance/first-exchange.ts); the two programs share no code but lib/. */
const SUBJECT_ANNOTATION = 'podidentity.dev/subject';

export const EXCHANGE_EVENT_FIELD_SELECTOR = `reason=${EVENT_FIRST_TOKEN_EXCHANGE},involvedObject.kind=${PODIDENTITY_KIND}`;

export function slimExchangeEvent(ev: CoreV1Event): CoreV1Event {
  const m = ev.metadata ?? {};
  const o = ev.involvedObject ?? {};
  return {
    metadata: { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion, creationTimestamp: m.creationTimestamp, annotations: { [SUBJECT_ANNOTATION]: m.annotations?.[SUBJECT_ANNOTATION] ?? '' } },
    involvedObject: { kind: o.kind, name: o.name, namespace: o.namespace, uid: o.uid },
    reason: ev.reason,
    source: { host: ev.source?.host },
  } as CoreV1Event;
}

/**
 * The namespace an Event may speak for: the one it was created in, which RBAC bounds. `involvedObject` is
 * whatever its author wrote (the API server accepts one in another namespace), so an Event naming another
 * namespace's object speaks for nothing: a namespace user who may create Events would otherwise report an
 * exchange for, and wake the reconcile of, any PodIdentity of the cluster.
 */
function ownNamespace(ev: CoreV1Event): string | undefined {
  const own = ev.metadata?.namespace;
  if (!own) return undefined;
  const named = ev.involvedObject?.namespace;
  return named === undefined || named === '' || named === own ? own : undefined;
}

/** The PodIdentity key (`<namespace>/<name>`) the Event is about; undefined when it may not speak for it. */
export function exchangeEventKey(ev: CoreV1Event): string | undefined {
  const namespace = ownNamespace(ev);
  const name = ev.involvedObject?.name;
  return namespace && name ? `${namespace}/${name}` : undefined;
}

export function exchangeReportOf(ev: CoreV1Event): ExchangeReport[] {
  const subject = ev.metadata?.annotations?.[SUBJECT_ANNOTATION];
  // The API server's own time of storing it, not the node's clock (plain JSON from the watch: a string).
  const at = Date.parse(String(ev.metadata?.creationTimestamp ?? ''));
  if (exchangeEventKey(ev) === undefined || ev.reason !== EVENT_FIRST_TOKEN_EXCHANGE || ev.involvedObject?.kind !== PODIDENTITY_KIND) return [];
  if (!subject || !ev.involvedObject.uid || !Number.isFinite(at)) return [];
  return [{ uid: ev.involvedObject.uid, subject, at, ...(ev.source?.host ? { node: ev.source.host } : {}) }];
}
