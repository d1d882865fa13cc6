import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * The operator's domain metrics (prefix podidentity_operator_). Reconcile totals/durations and the work-queue
 * metrics are registered by the runtime (operator/runtime/controller.ts, queue.ts) on the same registry.
 */
export interface OperatorMetrics {
  azureRequestDuration: Histogram<'operation' | 'code'>;
  azureThrottled: Counter<'operation'>;
  podIdentities: Gauge<'ready'>;
  scaleSetPatches: Counter<'result'>;
  eventsDropped: Counter;
}

function getOr<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Registers (once per registry) and returns the operator's metrics. */
export function registerOperatorMetrics(registry: Registry): OperatorMetrics {
  const registers = [registry];
  return {
    azureRequestDuration: getOr(registry, 'podidentity_operator_azure_request_duration_seconds', () =>
      new Histogram({
        name: 'podidentity_operator_azure_request_duration_seconds',
        help: 'Azure (ARM) request duration by operation and HTTP status class (2xx, 4xx, 5xx; error when no answer came).',
        labelNames: ['operation', 'code'],
        buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        registers,
      }),
    ),
    azureThrottled: getOr(registry, 'podidentity_operator_azure_throttled_total', () =>
      new Counter({ name: 'podidentity_operator_azure_throttled_total', help: 'Azure requests answered 429 (throttled), by operation.', labelNames: ['operation'], registers }),
    ),
    podIdentities: getOr(registry, 'podidentity_operator_podidentities', () =>
      new Gauge({ name: 'podidentity_operator_podidentities', help: 'PodIdentities by the status of their Ready condition (True, False, Unknown).', labelNames: ['ready'], registers }),
    ),
    scaleSetPatches: getOr(registry, 'podidentity_operator_scaleset_patches_total', () =>
      new Counter({ name: 'podidentity_operator_scaleset_patches_total', help: 'Scale-set identity PATCHes, by result (success, error).', labelNames: ['result'], registers }),
    ),
    eventsDropped: getOr(registry, 'podidentity_operator_events_dropped_total', () =>
      new Counter({ name: 'podidentity_operator_events_dropped_total', help: 'Kubernetes Events not posted because too many were already waiting (the API server is slow or unreachable).', registers }),
    ),
  };
}
