/**
 * The few errors the reconciler needs to tell apart. Every Azure adapter translates SDK errors into these,
 * so the reconciler never inspects a RestError.
 */
export class AzureError extends Error {
  constructor(
    message: string,
    readonly operation: string,
    readonly statusCode?: number,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** 404: the resource is not there (during cleanup: already gone). */
export class NotFoundError extends AzureError {}
/** 429: ARM asked us to slow down. The key is requeued after `retryAfterMs`; nothing hot-loops. */
export class ThrottledError extends AzureError {
  constructor(message: string, operation: string, readonly retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, operation, 429, 'TooManyRequests', options);
  }
}
/** 409 other than the ones adapters treat as success. */
export class ConflictError extends AzureError {}
/** A just-created principal has not replicated yet: retry with backoff. */
export class PrincipalNotFoundError extends AzureError {}
/** A hard Azure limit (20 FICs per identity, 100 identities per scale set): retrying does not help. */
export class LimitExceededError extends AzureError {}
/** 401/403: the operator's own identity lacks a permission. */
export class ForbiddenError extends AzureError {}

const DEFAULT_RETRY_AFTER_MS = 10_000;
const MAX_RETRY_AFTER_MS = 5 * 60_000;

interface RestErrorLike {
  statusCode?: number;
  code?: string;
  message?: string;
  response?: { headers?: { get(name: string): string | undefined } };
}

/** Retry-After as seconds or an HTTP date; absent or unparseable → a conservative default. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number {
  if (!value) return DEFAULT_RETRY_AFTER_MS;
  const seconds = Number(value);
  let ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms) || ms < 0) ms = DEFAULT_RETRY_AFTER_MS;
  return Math.min(Math.max(ms, 1000), MAX_RETRY_AFTER_MS);
}

const LIMIT_CODES = /LimitExceeded|TooManyUserAssignedIdentities|IdentityLimit/i;

/** Maps an SDK (RestError) failure to a typed error. Unknown failures pass through as AzureError (retried). */
export function translateAzureError(err: unknown, operation: string): Error {
  if (err instanceof AzureError) return err;
  const e = (err ?? {}) as RestErrorLike;
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const message = `${operation}: ${e.message ?? String(err)}`;
  if (status === 404) return new NotFoundError(message, operation, status, code, { cause: err });
  if (status === 429) return new ThrottledError(message, operation, parseRetryAfter(e.response?.headers?.get('retry-after')), { cause: err });
  if (code === 'PrincipalNotFound') return new PrincipalNotFoundError(message, operation, status, code, { cause: err });
  if (code && LIMIT_CODES.test(code)) return new LimitExceededError(message, operation, status, code, { cause: err });
  if (status === 401 || status === 403) return new ForbiddenError(message, operation, status, code, { cause: err });
  if (status === 409) return new ConflictError(message, operation, status, code, { cause: err });
  return new AzureError(message, operation, status, code, { cause: err });
}
