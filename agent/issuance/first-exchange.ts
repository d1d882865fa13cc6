/**
 * Tells the operator (and `kubectl describe`) that Azure AD accepted a PodIdentity's federated credential: a
 * FirstTokenExchange Event on the PodIdentity, once per node, credential write and subject. The agent never
 * writes PodIdentity status: only the operator does, from these Events.
 */
import { createHash } from 'node:crypto';
import type { ApiServer } from '../../lib/k8s/api-server.js';
import { API_VERSION, EVENT_FIRST_TOKEN_EXCHANGE, PODIDENTITY_KIND } from '../../lib/api/types.js';
import type { Logger } from '../../lib/log.js';
import { RawApiError, requestJson } from '../../lib/k8s/rest.js';
import type { ReadyIdentity } from './select.js';

/** The annotation that carries which service account's credential the exchange proved. */
export const SUBJECT_ANNOTATION = 'podidentity.dev/subject';
/** Reports remembered per agent; beyond this the oldest are forgotten (at worst one more Event, deduplicated by name). */
const MAX_REMEMBERED = 4096;

/** Creates a core/v1 Event; resolves with the HTTP status (201 when created; 409: one of that name exists). */
export type CreateEvent = (namespace: string, event: Record<string, unknown>) => Promise<number>;

export class FirstExchangeReporter {
  private readonly reported = new Set<string>();

  constructor(
    private readonly createEvent: CreateEvent,
    private readonly nodeName: string,
    private readonly logger?: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** After a successful exchange. Never throws and never delays the token: the Event is best-effort. */
  exchanged(identity: ReadyIdentity, subject: string): void {
    if (identity.propagated !== false || !identity.uid) return; // the operator has recorded it already
    const written = identity.credentialWrites?.get(subject);
    if (typeof written !== 'number') return; // nothing the operator waits on
    const key = `${identity.uid}|${subject}|${written}`;
    if (this.reported.has(key)) return;
    this.remember(key);
    // One name per node, credential write and subject: a restarted agent recreates the same Event (409).
    const digest = createHash('sha256').update(`${key}|${this.nodeName}`).digest('hex').slice(0, 16);
    const at = this.now().toISOString();
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${identity.name.slice(0, 200)}.${digest}`, namespace: identity.namespace, annotations: { [SUBJECT_ANNOTATION]: subject } },
      involvedObject: { apiVersion: API_VERSION, kind: PODIDENTITY_KIND, name: identity.name, namespace: identity.namespace, uid: identity.uid },
      reason: EVENT_FIRST_TOKEN_EXCHANGE,
      message: `Azure AD accepted the federated credential for ${subject}: first token exchange for client_id ${identity.clientId} on node ${this.nodeName}`,
      type: 'Normal',
      source: { component: 'podidentity-agent', host: this.nodeName },
      firstTimestamp: at,
      lastTimestamp: at,
      count: 1,
    };
    void this.createEvent(identity.namespace, event).then(
      (status) => {
        if (status >= 300 && status !== 409) {
          this.reported.delete(key); // try again at the next exchange
          this.logger?.warn('could not record the first token exchange', { namespace: identity.namespace, podIdentity: identity.name, status });
        }
      },
      (err: unknown) => {
        this.reported.delete(key);
        this.logger?.warn('could not record the first token exchange', { namespace: identity.namespace, podIdentity: identity.name, err: (err as Error).message });
      },
    );
  }

  private remember(key: string): void {
    this.reported.add(key);
    if (this.reported.size > MAX_REMEMBERED) this.reported.delete(this.reported.values().next().value!);
  }
}

/** Event creation over the agent's API-server pool, through the same raw request as its other calls. */
export function eventCreator(api: ApiServer, timeoutMs: number): CreateEvent {
  return async (namespace, event) => {
    // Not AbortSignal.timeout: its timer would outlive the request and abort the pooled connection afterwards.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`Event not created within ${timeoutMs} ms`)), timeoutMs);
    try {
      await requestJson(api, 'POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, { body: { contentType: 'application/json', value: event }, signal: controller.signal });
      return 201;
    } catch (err) {
      if (err instanceof RawApiError) return err.code;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
}
