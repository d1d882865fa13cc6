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

/** Renders a selector in the API server's `labelSelector` query syntax. */
export function selectorToQuery(selector: LabelSelector): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) parts.push(`${key}=${value}`);
  for (const expr of selector.matchExpressions ?? []) {
    const values = (expr.values ?? []).join(',');
    if (expr.operator === 'In') parts.push(`${expr.key} in (${values})`);
    else if (expr.operator === 'NotIn') parts.push(`${expr.key} notin (${values})`);
    else if (expr.operator === 'Exists') parts.push(expr.key);
    else parts.push(`!${expr.key}`);
  }
  return parts.join(',');
}
