import type { OperatorMetrics } from '../metrics.js';
import { AzureError, ThrottledError, translateAzureError } from './errors.js';

/** Times one Azure call, counts throttles, and translates its failure into a typed error. */
export type AzureCall = <T>(operation: string, fn: () => Promise<T>) => Promise<T>;

/**
 * The `code` label is always a status class (2xx, 4xx, 5xx), or `error` when no HTTP answer came: the SDK does
 * not show a success's exact status, so exact codes on failures only would mix two kinds of value in one label.
 * 429s are also counted by operation in podidentity_operator_azure_throttled_total.
 */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

export function instrumentedCall(metrics?: Pick<OperatorMetrics, 'azureRequestDuration' | 'azureThrottled'>): AzureCall {
  return async (operation, fn) => {
    const started = performance.now();
    let code = '2xx';
    try {
      return await fn();
    } catch (err) {
      const typed = translateAzureError(err, operation);
      code = typed instanceof AzureError && typed.statusCode !== undefined ? statusClass(typed.statusCode) : 'error';
      if (typed instanceof ThrottledError) metrics?.azureThrottled.inc({ operation });
      throw typed;
    } finally {
      metrics?.azureRequestDuration.observe({ operation, code }, (performance.now() - started) / 1000);
    }
  };
}
