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

/**
 * `system:serviceaccount:<namespace>:<name>`: a namespace is a DNS label, a service account a DNS subdomain.
 * Anything else (or longer) is no subject an agent reports, and is not kept.
 */
const SERVICE_ACCOUNT_SUBJECT = /^system:serviceaccount:[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** Node and PodIdentity names are DNS subdomains, namespaces DNS labels; UIDs are 36 characters. */
const MAX_NAME = 253;
const MAX_NAMESPACE = 63;
const MAX_UID = 64;
/** Stands in for a namespace too long to be one (not a DNS label): the Event then speaks for no PodIdentity. */
const NO_NAMESPACE = '-';
const bounded = (value: string | undefined, max: number) => (value !== undefined && value.length <= max ? value : undefined);

/**
 * Anyone who may create Events in a namespace can make them as large as the API server allows (an annotation
 * of hundreds of KB), and the operator caches every FirstTokenExchange Event of the cluster: only values an
 * agent could have written are kept, so each costs a few hundred bytes whatever its author sent.
 */
export function slimExchangeEvent(ev: CoreV1Event): CoreV1Event {
  const m = ev.metadata ?? {};
  const o = ev.involvedObject ?? {};
  const subject = m.annotations?.[SUBJECT_ANNOTATION] ?? '';
  const host = ev.source?.host;
  return {
    metadata: { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion, creationTimestamp: m.creationTimestamp, annotations: { [SUBJECT_ANNOTATION]: SERVICE_ACCOUNT_SUBJECT.test(subject) ? subject : '' } },
    // Not validated by the API server on Events: bounded here (a name too long names no PodIdentity).
    involvedObject: { kind: bounded(o.kind, MAX_NAME), name: bounded(o.name, MAX_NAME), namespace: o.namespace ? (bounded(o.namespace, MAX_NAMESPACE) ?? NO_NAMESPACE) : o.namespace, uid: bounded(o.uid, MAX_UID) },
    reason: bounded(ev.reason, MAX_NAME),
    source: { host: bounded(host, MAX_NAME) },
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
