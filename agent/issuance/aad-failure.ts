/**
 * What a failed federated exchange means for the pod that asked, decided once: every Azure AD failure class
 * maps to one IMDS-shaped answer that IMDS clients handle correctly (the table in agent/README.md). Never a
 * 500: SDKs retry a 503 or 429 with `Retry-After`, and give up at once on a 400 that names what is wrong.
 */
import { boundedRetryAfter, DEFAULT_RETRY_AFTER_SECONDS, MIN_RETRY_AFTER_SECONDS } from './retry-after.js';
import { UpstreamError } from './types.js';

export { boundedRetryAfter, DEFAULT_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS, MIN_RETRY_AFTER_SECONDS } from './retry-after.js';

/** Why the exchange did not produce a token, as Azure AD (or the way to it) said. Never token material. */
export type AadFailure =
  /** Azure AD answered with an error: its HTTP status, OAuth `error`, first AADSTS code and description. */
  | { kind: 'refused'; status: number; error: string; aadsts?: number; description: string; retryAfter?: string }
  /** Azure AD did not answer usably: timeout, connection failure, or an answer that is not Azure AD's. */
  | { kind: 'unreachable'; description: string };

/** Thrown by an AadExchange; FederatedIssuer classifies it with what it knows about the credential. */
export class AadExchangeError extends Error {
  constructor(readonly failure: AadFailure) {
    super(failure.description);
    this.name = 'AadExchangeError';
  }
}

/**
 * AADSTS codes that mean "Azure AD does not (yet) know the credential or the identity": no matching federated
 * record (for the assertion, its issuer, subject or audience), or the identity's application not yet in
 * the directory. A credential or identity that was just created answers exactly these while it propagates.
 */
export const PROPAGATION_CODES: ReadonlySet<number> = new Set([70021, 700211, 700212, 700213, 7002137, 7002138, 700016]);

/** Azure AD could not reach the cluster's OIDC issuer to verify the assertion: worth a retry. */
const ISSUER_UNREACHABLE = 50166;

/** How long after the operator wrote a credential its refusal is taken for propagation, not a misconfiguration. */
export const DEFAULT_PROPAGATION_WINDOW_MS = 10 * 60_000;

/** Propagation: the longest wait between retries (the wait grows with the credential's age, up to this). */
export const MAX_PROPAGATION_RETRY_AFTER_SECONDS = 10;

/** What the agent knows about the federated credential the exchange relied on. */
export interface CredentialContext {
  clientId: string;
  /** `system:serviceaccount:<ns>:<sa>` of the calling pod. */
  subject: string;
  /**
   * When the operator last created or changed the credential (status), in unix ms; `undefined` when the
   * operator has not recorded one for this subject yet, `null` when it recorded one without a time (written
   * by a version that did not record it: long propagated).
   */
  credentialWrittenAt: number | null | undefined;
  now: number;
  propagationWindowMs: number;
}

const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, n));

/** The answer the calling pod gets for `failure`. */
export function classifyAadFailure(failure: AadFailure, ctx: CredentialContext): UpstreamError {
  const who = `client_id ${ctx.clientId}, subject ${ctx.subject}`;
  if (failure.kind === 'unreachable') {
    return new UpstreamError('aad', 503, 'aad_unavailable', `Azure AD is unavailable for the federated token exchange (${who}): ${failure.description}`, DEFAULT_RETRY_AFTER_SECONDS);
  }
  const said = `Azure AD answered ${failure.status} ${failure.error}: ${failure.description}`;
  if (failure.status === 429) {
    return new UpstreamError('aad', 429, 'aad_throttled', `Azure AD is throttling token requests for ${who}; retry after the Retry-After interval. ${said}`, boundedRetryAfter(failure.retryAfter, ctx.now));
  }
  if (failure.status >= 500 || failure.aadsts === ISSUER_UNREACHABLE) {
    return new UpstreamError('aad', 503, 'aad_unavailable', `Azure AD could not complete the federated token exchange for ${who}. ${said}`, boundedRetryAfter(failure.retryAfter, ctx.now));
  }
  if (failure.aadsts !== undefined && PROPAGATION_CODES.has(failure.aadsts)) {
    const written = ctx.credentialWrittenAt;
    if (written === undefined) {
      return new UpstreamError('aad', 503, 'credential_pending', `the operator has not registered a federated credential for ${who} yet; retry shortly. ${said}`, MIN_RETRY_AFTER_SECONDS);
    }
    const age = written === null ? Number.POSITIVE_INFINITY : ctx.now - written;
    if (age < ctx.propagationWindowMs) {
      // Azure AD accepts a new credential after seconds to minutes: a client that started early waits longer
      // between retries the longer propagation has already taken.
      const retryAfter = clamp(Math.ceil(Math.max(0, age) / 1000), MIN_RETRY_AFTER_SECONDS, MAX_PROPAGATION_RETRY_AFTER_SECONDS);
      const since = new Date(written!).toISOString();
      return new UpstreamError('aad', 503, 'credential_propagating', `the federated credential for ${who} was written at ${since} and Azure AD has not accepted it yet (it can take a few minutes); retry shortly. ${said}`, retryAfter);
    }
    return new UpstreamError('aad', 400, 'credential_not_accepted', `Azure AD does not accept the federated credential for ${who}, recorded by the operator more than ${Math.round(ctx.propagationWindowMs / 60_000)} min ago: check the identity's federated credential (issuer, subject, audience api://AzureADTokenExchange). ${said}`);
  }
  return new UpstreamError('aad', 400, 'aad_refused', `Azure AD refused the federated token exchange for ${who}. ${said}`);
}
