/**
 * The request target in the one form every decision is made on. IMDS decodes the path it is given, so a path
 * that *decodes* to the token path is a token request however it is spelled (`%69dentity`, `IDENTIT%59`,
 * `identity%2Foauth2%2Ftoken`, `\`, `//`, `/./`, `..`). Deciding on the raw spelling is how a request meant
 * for the node's own identities slipped past the agent; so the raw target is decoded once, here, and nothing
 * downstream looks at it again.
 */

/** The decoded, normalised request target. */
export interface CanonicalTarget {
  /**
   * Percent-escapes decoded once, `\` read as `/`, empty and `.` segments dropped, `..` resolved, no trailing
   * slash. Case is kept: IMDS leaf names are camelCase (`vmId`), and this is exactly what a forward sends.
   */
  path: string;
  /** `path` lowercased: what routing compares (IMDS matches paths case-insensitively). */
  key: string;
  /** The decoded query. */
  query: URLSearchParams;
  /** The raw path spelled a separator in a way no IMDS client does: `%2F`, `%5C` or `\`. */
  disguisedSeparator: boolean;
}

/** A request target that cannot be put in canonical form; the caller answers IMDS's 400 with `reason`. */
export class MalformedTarget extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'MalformedTarget';
  }
}

/**
 * Characters a canonical path may hold. Every IMDS path is made of these; anything else (a decoded `?`, `#`,
 * `%`, `;`, space or control character) could mean something else to whoever reads the path next.
 */
const CANONICAL_PATH = /^[A-Za-z0-9._~\-/]*$/;

export function canonicalTarget(rawTarget: string): CanonicalTarget {
  // Only origin-form (`/path?query`): an absolute-form or `*` target has no business at a link-local service.
  if (!rawTarget.startsWith('/')) throw new MalformedTarget('Invalid request target: expected a path');
  const q = rawTarget.indexOf('?');
  const rawPath = q < 0 ? rawTarget : rawTarget.slice(0, q);
  const rawQuery = q < 0 ? '' : rawTarget.slice(q + 1);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    throw new MalformedTarget('Invalid path: malformed percent-escape');
  }
  const disguisedSeparator = /%2f|%5c|\\/i.test(rawPath);
  const separated = decoded.replaceAll('\\', '/');
  // Decoded once, like IMDS. What is left must be plain: a `%` here was double-encoded.
  if (!CANONICAL_PATH.test(separated)) throw new MalformedTarget('Invalid path: characters outside [A-Za-z0-9._~-/] after decoding');
  const segments: string[] = [];
  for (const segment of separated.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const path = `/${segments.join('/')}`;
  return { path, key: path.toLowerCase(), query: new URLSearchParams(rawQuery), disguisedSeparator };
}
