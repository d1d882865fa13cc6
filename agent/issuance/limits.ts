import { ImdsError } from '../imds/protocol.js';

export interface IssuanceLimitsOptions {
  /** Distinct resources one principal may get new tokens for per window. */
  maxResources: number;
  /** Upstream token requests (misses, honoured bypasses, refreshes) per principal per window. */
  maxExchanges: number;
  windowMs: number;
  now?: () => number;
  onRefused?: (reason: 'resources_per_identity' | 'exchanges_per_identity') => void;
}

interface Usage {
  /** Resource → when it last went upstream. */
  resources: Map<string, number>;
  /** When each upstream request in the window started, oldest first. */
  exchanges: number[];
}

/** Principals tracked before expired ones are swept. */
const SWEEP_AT = 4096;

/**
 * Caps what one principal (an identity and the service account of the pod that uses it, in both modes) can
 * make the agent do upstream: a pod asking for endless distinct resources would otherwise push other pods'
 * tokens out of the cache and spend its identity's Azure AD rate limit. Only upstream work is counted:
 * cached tokens are always served. Past a cap: 429 with Retry-After, as IMDS throttles.
 */
export class IssuanceLimits {
  private readonly usage = new Map<string, Usage>();
  private readonly now: () => number;

  constructor(private readonly options: IssuanceLimitsOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Records one upstream request for `principal` and `resource`, or throws a 429 ImdsError past a cap. */
  admit(principal: string, resource: string): void {
    const now = this.now();
    const u = this.current(principal, now);
    if (!u.resources.has(resource) && u.resources.size >= this.options.maxResources) {
      const oldest = Math.min(...u.resources.values());
      this.options.onRefused?.('resources_per_identity');
      throw tooMany(`This identity was issued tokens for ${u.resources.size} distinct resources in the last ${this.windowText()}, the most the pod identity agent allows; retry later or ask for a resource already in use`, oldest + this.options.windowMs - now);
    }
    if (u.exchanges.length >= this.options.maxExchanges) {
      this.options.onRefused?.('exchanges_per_identity');
      throw tooMany(`This identity made ${u.exchanges.length} upstream token requests in the last ${this.windowText()}, the most the pod identity agent allows; retry later`, u.exchanges[0]! + this.options.windowMs - now);
    }
    u.resources.delete(resource);
    u.resources.set(resource, now);
    u.exchanges.push(now);
  }

  private current(principal: string, now: number): Usage {
    const horizon = now - this.options.windowMs;
    let u = this.usage.get(principal);
    if (!u) {
      if (this.usage.size >= SWEEP_AT) this.sweep(horizon);
      this.usage.set(principal, (u = { resources: new Map(), exchanges: [] }));
    }
    for (const [resource, at] of u.resources) if (at <= horizon) u.resources.delete(resource);
    while (u.exchanges.length && u.exchanges[0]! <= horizon) u.exchanges.shift();
    return u;
  }

  private sweep(horizon: number): void {
    for (const [principal, u] of this.usage) if ((u.exchanges.at(-1) ?? 0) <= horizon && [...u.resources.values()].every((at) => at <= horizon)) this.usage.delete(principal);
  }

  private windowText(): string {
    const s = Math.round(this.options.windowMs / 1000);
    return s % 60 === 0 ? `${s / 60} min` : `${s} s`;
  }
}

function tooMany(description: string, retryInMs: number): ImdsError {
  return new ImdsError(429, 'too_many_requests', description, { 'Retry-After': String(Math.max(1, Math.ceil(retryInMs / 1000))) });
}
