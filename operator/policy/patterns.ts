/**
 * ARM path patterns used by PodIdentityPolicy.allowedScopes and allowedExistingIdentities. ARM ids are
 * case-insensitive, so matching is too.
 * - No `*`: a prefix, by whole segments: it allows itself and everything beneath it.
 * - With `*`: a glob where `*` matches within exactly one segment (`team-*` matches `team-a`), and a trailing
 *   `/**` matches the path itself and anything beneath it.
 */
export function normalizePath(path: string): string {
  return path.trim().replace(/\/{2,}/g, '/').replace(/\/+$/, '').toLowerCase();
}

function segmentRegex(segment: string): string {
  return segment
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]*');
}

const compiled = new Map<string, RegExp>();

function globRegex(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (re) return re;
  let body = pattern;
  let anySuffix = false;
  if (body === '/**') return /^\/.*$/;
  if (body.endsWith('/**')) {
    anySuffix = true;
    body = body.slice(0, -3);
  }
  const segments = body.split('/').slice(1); // leading ''
  const source = '^' + segments.map((s) => '/' + (s === '**' ? '.*' : segmentRegex(s))).join('') + (anySuffix ? '(/.*)?' : '') + '$';
  re = new RegExp(source);
  if (compiled.size > 1000) compiled.clear();
  compiled.set(pattern, re);
  return re;
}

export function matchesPathPattern(pattern: string, path: string): boolean {
  const p = normalizePath(pattern);
  const s = normalizePath(path);
  if (!p || !s) return false;
  if (!p.includes('*')) return s === p || s.startsWith(p + '/');
  return globRegex(p).test(s);
}
