/**
 * The FederatedCredentialPropagated condition and `status.firstSuccessfulExchange`: whether Azure AD has
 * accepted the credentials the operator wrote. Azure AD takes seconds to minutes to accept a new federated
 * credential; meanwhile the agent answers pods 503 + Retry-After. Agents report a first successful exchange
 * as a FirstTokenExchange Event on the PodIdentity; only the operator writes status. An Event proves nothing
 * about ownership: at worst a forged one makes this informational condition say True early.
 */
import type { FederatedCredentialStatus, FirstExchangeStatus } from '../../lib/api/types.js';
import { ok, type Cond } from './status.js';

/** How long after a credential write a missing exchange still counts as propagation (the agent's window too). */
export const PROPAGATION_WINDOW_MS = 10 * 60_000;

/** One FirstTokenExchange Event, as the operator's cache keeps it. */
export interface ExchangeReport {
  /** The PodIdentity's uid the Event is about (a PodIdentity recreated under the same name is another). */
  uid: string;
  subject: string;
  /** When the API server stored the Event (its clock, not the node's), unix ms. */
  at: number;
  node?: string;
}

/** What status already says: the recorded first exchange, and since when the condition has been True. */
export interface Recorded {
  first?: FirstExchangeStatus;
  propagatedSince?: string;
}

export interface Propagation {
  condition?: Cond;
  first?: FirstExchangeStatus;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const writeTime = (c: FederatedCredentialStatus) => (c.lastWriteTime ? Date.parse(c.lastWriteTime) : Number.NaN);

/**
 * Decides the condition from the recorded credentials and the Events about this PodIdentity. A credential is
 * confirmed by an exchange for its subject reported after its last write; one written before this was
 * recorded (no lastWriteTime) is long propagated.
 */
export function propagationOf(uid: string, credentials: readonly FederatedCredentialStatus[], reports: readonly ExchangeReport[], now: number, previous: Recorded = {}, windowMs = PROPAGATION_WINDOW_MS): Propagation {
  if (credentials.length === 0) return { condition: { status: 'Unknown', reason: 'NoCredentials', message: 'no federated credentials yet: no selected pod uses a service account' } };
  const mine = reports.filter((r) => r.uid === uid);
  const writes = credentials.map(writeTime).filter(Number.isFinite);
  const latestWrite = writes.length ? Math.max(...writes) : Number.NaN;
  const after = (at: number) => !Number.isFinite(latestWrite) || at >= latestWrite;
  const sinceWrite = mine.filter((r) => after(r.at)).sort((a, b) => a.at - b.at)[0];
  // Events expire (an hour by default): what status already recorded stands until a credential is written again.
  const recordedFirst = previous.first && after(Date.parse(previous.first.time)) ? previous.first : undefined;
  const first = sinceWrite && !(recordedFirst && Date.parse(recordedFirst.time) <= sinceWrite.at) ? { time: iso(sinceWrite.at), ...(sinceWrite.node ? { node: sinceWrite.node } : {}) } : recordedFirst;
  const confirmedAt = previous.propagatedSince ? Date.parse(previous.propagatedSince) : Number.NaN;
  const unconfirmed = credentials.filter((c) => {
    const written = writeTime(c);
    if (!Number.isFinite(written) || confirmedAt >= written) return false;
    return !mine.some((r) => r.subject === c.subject && r.at >= written);
  });
  if (unconfirmed.length === 0) {
    const message = first ? `Azure AD accepted the federated credentials: first token exchange at ${first.time}${first.node ? ` on node ${first.node}` : ''}` : 'the federated credentials were written before this operator version recorded propagation';
    return { condition: ok('Propagated', message), ...(first ? { first } : {}) };
  }
  const propagating = unconfirmed.filter((c) => now - writeTime(c) < windowMs);
  const subjects = (list: FederatedCredentialStatus[]) => list.map((c) => `${c.subject} (written ${iso(writeTime(c))})`).join(', ');
  if (propagating.length > 0) {
    return {
      condition: {
        status: 'False',
        reason: 'Propagating',
        message: `Azure AD can take up to ${Math.round(windowMs / 60_000)} minutes to accept new federated credentials: ${subjects(propagating)}. Until it does, the agent answers token requests with 503 and Retry-After, which IMDS clients retry, so a pod's first token may take a moment`,
      },
      ...(first ? { first } : {}),
    };
  }
  return {
    condition: {
      status: 'Unknown',
      reason: 'NoExchangeYet',
      message: `no agent has reported a successful token exchange for ${subjects(unconfirmed)}; if pods get errors naming these credentials, check the identity's federated credentials in Azure`,
    },
    ...(first ? { first } : {}),
  };
}
