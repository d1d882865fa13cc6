/**
 * The API server's own request and watch-event counters (its /metrics), read before and after a window, so
 * P3 can say what converging made the API server do per PodIdentity: requests by verb and resource (the
 * apply's POSTs and the bench's one watch included) and watch events sent by kind (to every watcher).
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';
import { apiRequest } from '../../lib/k8s/rest.js';
import type { BenchEnv } from './fixture.js';

export interface ApiServerCounts {
  /** `VERB resource[/subresource]` → requests (watch requests count when they end, as the API server counts them). */
  requests: Record<string, number>;
  /** kind → watch events sent. */
  watchEvents: Record<string, number>;
}

async function metricsText(env: BenchEnv): Promise<string> {
  const { url, transport, options } = await apiRequest(kubeConfigApiServer(env.kc), 'GET', '/metrics', {}, { Accept: 'text/plain' });
  return new Promise((resolve, reject) => {
    const req = transport.request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => ((res.statusCode ?? 0) === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`GET /metrics: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Per label key, the sum of one counter family's samples (`key` → value). */
export function counterBy(text: string, family: string, key: (labels: Record<string, string>) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const sample of parsePrometheusTextFormat(text).find((f) => f.name === family)?.metrics ?? []) {
    const k = key(sample.labels ?? {});
    out[k] = (out[k] ?? 0) + Number(sample.value);
  }
  return out;
}

/** Parses the two counters out of the Prometheus text format. */
export function parseApiServerCounts(text: string): ApiServerCounts {
  return {
    requests: counterBy(text, 'apiserver_request_total', (l) => `${l['verb']} ${l['resource'] ?? ''}${l['subresource'] ? `/${l['subresource']}` : ''}`),
    watchEvents: counterBy(text, 'apiserver_watch_events_total', (l) => l['kind'] ?? ''),
  };
}

export async function apiServerCounts(env: BenchEnv): Promise<ApiServerCounts> {
  return parseApiServerCounts(await metricsText(env));
}

function minus(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

export function countsDelta(after: ApiServerCounts, before: ApiServerCounts): ApiServerCounts {
  return { requests: minus(after.requests, before.requests), watchEvents: minus(after.watchEvents, before.watchEvents) };
}
