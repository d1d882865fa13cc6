import { parseArmId, parsePathPattern } from '../azure/arm-id.js';

/**
 * ARM path patterns used by PodIdentityPolicy.allowedScopes and allowedExistingIdentities. ARM ids are
 * case-insensitive, so matching compares lower-case forms.
 * - No `*`: a prefix, by whole segments: it allows itself and everything beneath it.
 * - With `*`: a glob where `*` matches within exactly one segment (`team-*` matches `team-a`), and a trailing
 *   `/**` matches the path itself and anything beneath it.
 * Both sides must be canonical (operator/azure/arm-id.ts): a non-canonical pattern allows nothing, and a
 * non-canonical path is allowed by nothing, so `…/team-a/providers/../../..` can never match `…/team-a`.
 */

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
  if (body.endsWith('/**')) {
    anySuffix = true;
    body = body.slice(0, -3);
  }
  const segments = body.split('/').slice(1); // leading ''
  const source = '^' + segments.map((s) => '/' + segmentRegex(s)).join('') + (anySuffix ? '(/.*)?' : '') + '$';
  re = new RegExp(source);
  if (compiled.size > 1000) compiled.clear();
  compiled.set(pattern, re);
  return re;
}

export function matchesPathPattern(pattern: string, path: string): boolean {
  const p = parsePathPattern(pattern);
  const s = parseArmId(path);
  if (!p.ok || !s.ok) return false;
  const key = s.value.key;
  if (p.value === '/**') return true;
  if (!p.value.includes('*')) return key === p.value || key.startsWith(p.value + '/');
  return globRegex(p.value).test(key);
}
