/** Runtime-switchable fault injection, evaluated per request after routing (so rules can match route names). */
import type { RouteName } from './routes.js';

export interface FaultMatch {
  method?: string;
  /** RegExp tested against the path, or a plain substring. */
  path?: RegExp | string;
  route?: RouteName | string;
}

export interface FaultRule {
  match?: FaultMatch;
  /** Added before the request is answered (alone: a pure latency rule, e.g. for the token endpoint). */
  latencyMs?: number;
  /** Answer with this status instead of handling the request (an error body in the route's own shape). */
  status?: number;
  /** Sent as `Retry-After` with `status`. */
  retryAfterSeconds?: number;
  /** Probability (0..1) that a matching request is affected; default 1. */
  errorRate?: number;
  /** Never answer; the socket stays open until the client gives up or the emulator stops. */
  hang?: boolean;
  /** Affect only this many requests, then the rule expires. Unlimited when absent. */
  times?: number;
}

/** A JSON-safe rule (for the admin endpoint): `pathRegex` stands in for a RegExp path. */
export interface FaultRuleJson extends Omit<FaultRule, 'match'> {
  match?: { method?: string; path?: string; pathRegex?: string; route?: string };
}

export interface FaultDecision {
  ruleId: number;
  latencyMs: number;
  status?: number;
  retryAfterSeconds?: number;
  hang: boolean;
}

interface ActiveRule {
  id: number;
  rule: FaultRule;
  remaining: number;
}

export class FaultInjector {
  private rules: ActiveRule[] = [];
  private nextId = 1;

  /** Adds a rule (rules are tried in the order they were added; the first that fires wins). Returns its id. */
  set(rule: FaultRule): number {
    const id = this.nextId++;
    this.rules.push({ id, rule, remaining: rule.times ?? Number.POSITIVE_INFINITY });
    return id;
  }

  remove(id: number): void {
    this.rules = this.rules.filter((r) => r.id !== id);
  }

  clear(): void {
    this.rules = [];
  }

  list(): FaultRule[] {
    return this.rules.map((r) => r.rule);
  }

  decide(method: string, path: string, route: string): FaultDecision | undefined {
    for (const active of this.rules) {
      const { rule } = active;
      if (active.remaining <= 0) continue;
      if (!matches(rule.match, method, path, route)) continue;
      if (rule.errorRate !== undefined && Math.random() >= rule.errorRate) continue;
      active.remaining -= 1;
      if (active.remaining <= 0) this.remove(active.id);
      return {
        ruleId: active.id,
        latencyMs: rule.latencyMs ?? 0,
        ...(rule.status !== undefined ? { status: rule.status } : {}),
        ...(rule.retryAfterSeconds !== undefined ? { retryAfterSeconds: rule.retryAfterSeconds } : {}),
        hang: rule.hang ?? false,
      };
    }
    return undefined;
  }
}

function matches(match: FaultMatch | undefined, method: string, path: string, route: string): boolean {
  if (!match) return true;
  if (match.method && match.method.toUpperCase() !== method.toUpperCase()) return false;
  if (match.route && match.route !== route) return false;
  if (match.path !== undefined) {
    if (typeof match.path === 'string' ? !path.includes(match.path) : !match.path.test(path)) return false;
  }
  return true;
}

export function faultRuleFromJson(json: FaultRuleJson): FaultRule {
  const { match, ...rest } = json;
  if (!match) return rest;
  const { pathRegex, path, ...m } = match;
  return { ...rest, match: { ...m, ...(pathRegex !== undefined ? { path: new RegExp(pathRegex) } : path !== undefined ? { path } : {}) } };
}

export function faultRuleToJson(rule: FaultRule): FaultRuleJson {
  const { match, ...rest } = rule;
  if (!match) return rest;
  const { path, ...m } = match;
  return { ...rest, match: { ...m, ...(path instanceof RegExp ? { pathRegex: path.source } : path !== undefined ? { path } : {}) } };
}
