import { ImdsError, parseTokenRequest, route, type Route, type TokenRequest } from './protocol.js';
import { canonicalTarget, type CanonicalTarget } from './target.js';

/** Everything the agent decides from the request target alone. Shared between requests: never mutated. */
export interface ParsedTarget {
  target: CanonicalTarget;
  route: Route;
  /** For the token path: the parsed token request, or the 400 its query deserves. */
  token?: { request: TokenRequest } | { error: ImdsError };
}

/** Targets remembered; past this the memo starts again (a flood of distinct targets just parses each). */
const MAX_REMEMBERED = 512;
/** Longer targets are parsed every time, so the memo's memory stays small whatever clients send. */
const MAX_REMEMBERED_LENGTH = 2048;

function parse(raw: string): ParsedTarget {
  const target = canonicalTarget(raw);
  const where = route(target);
  if (where.kind !== 'token') return { target, route: where };
  try {
    return { target, route: where, token: { request: parseTokenRequest(target.query) } };
  } catch (err) {
    if (err instanceof ImdsError) return { target, route: where, token: { error: err } };
    throw err;
  }
}

/**
 * The canonical form, route and token request of a raw request target, memoised. They are a pure function
 * of the raw target, so a remembered answer is exactly what parsing again would give; a pod polling its
 * token sends the same target every time, and parsing it (decoding, normalising, the query) was a tenth of
 * the agent's own work per cached request. Malformed targets (MalformedTarget) are thrown every time and
 * never remembered.
 */
export class TargetParser {
  private readonly memo = new Map<string, ParsedTarget>();
  /**
   * The last target looked up, checked first. Each request's target is a new string, so a Map lookup hashes
   * all of it (about a hundred characters) every time; comparing with the last one is a length check and a
   * memcmp, and a pod polling its token sends the same target back to back.
   */
  private last: { raw: string; parsed: ParsedTarget } | undefined;

  parse(raw: string): ParsedTarget {
    if (this.last?.raw === raw) return this.last.parsed;
    const known = this.memo.get(raw);
    if (known) {
      this.last = { raw, parsed: known };
      return known;
    }
    const parsed = parse(raw);
    if (raw.length <= MAX_REMEMBERED_LENGTH) {
      if (this.memo.size >= MAX_REMEMBERED) this.memo.clear();
      this.memo.set(raw, parsed);
      this.last = { raw, parsed };
    }
    return parsed;
  }
}
