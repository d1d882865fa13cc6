import type { OperatorMetrics } from '../metrics.js';
import { AzureError, ThrottledError, translateAzureError } from './errors.js';

/** Times one Azure call, counts throttles, and translates its failure into a typed error. */
export type AzureCall = <T>(operation: string, fn: () => Promise<T>) => Promise<T>;

export function instrumentedCall(metrics?: Pick<OperatorMetrics, 'azureRequestDuration' | 'azureThrottled'>): AzureCall {
  return async (operation, fn) => {
    const started = performance.now();
    let code = '2xx';
    try {
      return await fn();
    } catch (err) {
      const typed = translateAzureError(err, operation);
      code = typed instanceof AzureError && typed.statusCode !== undefined ? String(typed.statusCode) : 'error';
      if (typed instanceof ThrottledError) metrics?.azureThrottled.inc({ operation });
      throw typed;
    } finally {
      metrics?.azureRequestDuration.observe({ operation, code }, (performance.now() - started) / 1000);
    }
  };
}
