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

/**
 * An upstream refused or failed. `status` is what the agent answers; never carries token material.
 * `retryAfterSeconds` is bounded here, once, whoever computed it: it becomes the pod's `Retry-After`.
 */
export class UpstreamError extends Error {
  readonly retryAfterSeconds?: number;

  constructor(
    readonly upstream: 'aad' | 'imds' | 'kubernetes',
    readonly status: number,
    readonly code: string,
    message: string,
    retryAfterSeconds?: number,
  ) {
    super(message);
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
