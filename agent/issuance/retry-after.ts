/**
 * The `Retry-After` the agent answers a pod with when an upstream failed. Upstreams (Azure AD, the node's
 * IMDS) say how long to wait in their own header, which is theirs to get wrong: whatever they send, a pod is
 * told a whole number of seconds, at least one (no tight retry loop) and at most a minute (never parked).
 */

export const MIN_RETRY_AFTER_SECONDS = 1;
export const MAX_RETRY_AFTER_SECONDS = 60;
/** When an upstream is unavailable or throttles without saying for how long. */
export const DEFAULT_RETRY_AFTER_SECONDS = 5;

/** `seconds` as whole seconds within the bounds; the default when it is not a number. */
export function boundedSeconds(seconds: number): number {
  if (!Number.isFinite(seconds)) return DEFAULT_RETRY_AFTER_SECONDS;
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(MIN_RETRY_AFTER_SECONDS, Math.ceil(seconds)));
}

/** Seconds from a `Retry-After` value (seconds or an HTTP date), bounded; the default when absent or unreadable. */
export function boundedRetryAfter(value: string | undefined, now: number): number {
  if (value === undefined || value.trim() === '') return DEFAULT_RETRY_AFTER_SECONDS;
  const trimmed = value.trim();
  return boundedSeconds(/^\d+$/.test(trimmed) ? Number(trimmed) : (Date.parse(trimmed) - now) / 1000);
}
