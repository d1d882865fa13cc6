import type { LabelSelector } from './types.js';

/**
 * Kubernetes label-selector semantics: every matchLabels entry and every expression must hold.
 * An empty selector matches everything, as in the API server.
 */
export function matchesSelector(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (have[key] !== value) return false;
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
