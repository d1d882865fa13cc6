import type { LabelSelector } from './types.js';

/**
 * Kubernetes label-selector semantics: every matchLabels entry and every expression must hold.
 * An empty selector matches everything, as in the API server.
 */
export function matchesSelector(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  // for…in over own keys, the same pairs as Object.entries without an array per call (it runs per request).
  const wanted = selector.matchLabels;
  if (wanted) {
    for (const key in wanted) {
      if (Object.hasOwn(wanted, key) && have[key] !== wanted[key]) return false;
    }
  }
  for (const expr of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(have, expr.key);
    const value = have[expr.key];
    switch (expr.operator) {
      case 'In':
        if (!present || !(expr.values ?? []).includes(value as string)) return false;
        break;
      case 'NotIn':
        if (present && (expr.values ?? []).includes(value as string)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
      default:
        return false; // unknown operators match nothing: fail closed
    }
  }
  return true;
}
