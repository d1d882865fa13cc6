import type { PodInfo } from '../attribution/types.js';
import type { IssuedToken } from '../imds/protocol.js';
import { boundedSeconds } from './retry-after.js';
import type { ReadyIdentity } from './select.js';

export interface IssueRequest {
  identity: ReadyIdentity;
  resource: string;
  /** The attributed caller; Federated mode binds its service-account token to this pod. */
  pod: PodInfo;
  /** Collects the time spent waiting on upstream round trips, so the agent's own share of a miss can be told apart. */
  upstream?: UpstreamClock;
}

/**
 * Wall time spent waiting on upstream round trips (TokenRequest, Azure AD, node IMDS) for one issuance. A
 * miss's duration minus this is the agent's own time on it: `miss_overhead_seconds`.
 */
export class UpstreamClock {
  ms = 0;

  async time<T>(call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await call();
    } finally {
      this.ms += performance.now() - started;
    }
  }
}

/** Runs `call` on `clock` when there is one. */
export function timed<T>(clock: UpstreamClock | undefined, call: () => Promise<T>): Promise<T> {
  return clock ? clock.time(call) : call();
}

/** Gets a token for one identity and resource from upstream (Azure AD or the node's IMDS). */
export interface Issuer {
  issue(request: IssueRequest): Promise<IssuedToken>;
}

/** Longest message an UpstreamError keeps: the pod's `error_description` and the audit line's reason. */
export const MAX_UPSTREAM_MESSAGE_CHARS = 2_000;
/** Longest code an UpstreamError keeps: the pod's `error`. */
export const MAX_UPSTREAM_CODE_CHARS = 100;

/** `text` cut to at most `max` characters, the cut marked with an ellipsis. */
export function truncated(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * An upstream refused or failed. `status` is what the agent answers; never carries token material.
 * `retryAfterSeconds` is bounded here, once, whoever computed it: it becomes the pod's `Retry-After`.
 */
export class UpstreamError extends Error {
  readonly retryAfterSeconds?: number;
  /** Bounded like the message: an upstream's own error code can be anything it sent. */
  readonly code: string;

  constructor(
    readonly upstream: 'aad' | 'imds' | 'kubernetes',
    readonly status: number,
    code: string,
    message: string,
    retryAfterSeconds?: number,
  ) {
    // What an upstream said ends up in the pod's answer and the audit line: a hostile or broken one
    // must not make either as long as its answer (up to MAX_ANSWER_BYTES).
    super(truncated(message, MAX_UPSTREAM_MESSAGE_CHARS));
    this.code = truncated(code, MAX_UPSTREAM_CODE_CHARS);
    this.name = 'UpstreamError';
    if (retryAfterSeconds !== undefined) this.retryAfterSeconds = boundedSeconds(retryAfterSeconds);
  }
}

/**
 * `<resource>/.default`, the v2 scope for a v1 resource; a trailing slash is kept, as Azure AD expects. The
 * resource is already canonical (`canonicalResource` took a scope's suffix off), so the suffix is always
 * added: the token's audience is then exactly the resource the agent echoes.
 */
export function scopeFor(resource: string): string {
  return `${resource}/.default`;
}
