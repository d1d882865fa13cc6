/**
 * A real Prometheus (Debian's `prometheus` 2.42) for the local stack: it scrapes the operator and every agent
 * the way the shipped ServiceMonitors tell prometheus-operator to (job = the metrics Service's name, the
 * endpoint's path, `node` from the pod's node) and evaluates the PrometheusRule's alert groups.
 * Used by e2e/stack/prometheus_e2e.ts and by `make run`.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { startProcess, type ManagedProcess } from '../support/processes.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { REPO, type Stack } from './stack.js';

export interface ScrapeTarget {
  /** host:port of the /metrics listener. */
  address: string;
  /** The node an agent runs on (prometheus-operator copies it from __meta_kubernetes_pod_node_name). */
  node?: string;
}

export interface PrometheusTargets {
  operator: ScrapeTarget[];
  agent: ScrapeTarget[];
}

export interface RunningPrometheus {
  url: string;
  process: ManagedProcess;
  /** An instant query; throws on a Prometheus error. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

interface ServiceMonitor {
  metadata: { name: string };
  spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path?: string; relabelings?: { sourceLabels?: string[]; targetLabel: string }[] }[] };
}

interface Service {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
}

/**
 * Prometheus scrape configs equivalent to what prometheus-operator generates from config/prometheus's
 * ServiceMonitors: one job per ServiceMonitor, named after the Service it selects, with its endpoint's path.
 */
export function scrapeConfigs(targets: PrometheusTargets, scrapeInterval: string): object[] {
  const monitors = parseAllDocuments(readFileSync(join(REPO, 'config/prometheus/servicemonitors.yaml'), 'utf8')).map((d) => d.toJS() as ServiceMonitor);
  const services = ['config/manager/metrics_service.yaml', 'config/agent/metrics_service.yaml'].map((f) => parse(readFileSync(join(REPO, f), 'utf8')) as Service);
  return monitors.map((m) => {
    const service = services.find((s) => Object.entries(m.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
    if (!service) throw new Error(`ServiceMonitor ${m.metadata.name} selects no metrics Service in config/`);
    const endpoint = m.spec.endpoints[0]!;
    const program = service.metadata.labels?.['app.kubernetes.io/name'] === 'podidentity-agent' ? 'agent' : 'operator';
    const copiesNode = (endpoint.relabelings ?? []).some((r) => r.targetLabel === 'node' && r.sourceLabels?.includes('__meta_kubernetes_pod_node_name'));
    return {
      job_name: service.metadata.name,
      metrics_path: endpoint.path ?? '/metrics',
      scrape_interval: scrapeInterval,
      static_configs: targets[program].map((t) => ({ targets: [t.address], labels: copiesNode && t.node ? { node: t.node } : {} })),
    };
  });
}

/** The PrometheusRule's rule groups as a plain Prometheus rule file. */
export function writeRuleFile(path: string): void {
  const rule = parse(readFileSync(join(REPO, 'config/prometheus/alerts.yaml'), 'utf8')) as { spec: { groups: unknown[] } };
  writeFileSync(path, stringify({ groups: rule.spec.groups }));
}

export async function startPrometheus(options: { dir: string; targets: PrometheusTargets; interval?: string; host?: string }): Promise<RunningPrometheus> {
  const interval = options.interval ?? '1s';
  const dir = join(options.dir, 'prometheus');
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeRuleFile(join(dir, 'rules.yaml'));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    stringify({ global: { scrape_interval: interval, evaluation_interval: interval }, rule_files: [join(dir, 'rules.yaml')], scrape_configs: scrapeConfigs(options.targets, interval) }),
  );
  const host = options.host ?? '127.0.0.1';
  const port = await freePort();
  const proc = startProcess('prometheus', 'prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=${host}:${port}`,
    '--storage.tsdb.retention.time=1d',
    '--log.level=warn',
  ], { logFile: join(dir, 'prometheus.log') });
  const url = `http://${host}:${port}`;
  try {
    await waitFor('Prometheus to be ready', async () => {
      if (proc.child.exitCode !== null) throw new Error(`prometheus exited: ${proc.output()}`);
      return (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok;
    }, { timeoutMs: 30_000, intervalMs: 200 });
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    url,
    process: proc,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
      return body.data?.resultType === 'vector' ? body.data.result : [];
    },
    stop: () => proc.stop(),
  };
}

/** Prometheus over a running stack: every operator replica and every agent (as the ServiceMonitors select them), scraped every `interval`. */
export function startStackPrometheus(stack: Stack, interval = '5s'): Promise<RunningPrometheus> {
  const address = (url: string) => new URL(url).host;
  return startPrometheus({
    dir: stack.dir,
    interval,
    targets: { operator: stack.operators.map((p) => ({ address: address(p.url('metrics', '/metrics')) })), agent: stack.nodes.map((n) => ({ address: address(n.metricsUrl), node: n.name })) },
  });
}

/** A Prometheus UI link that graphs one expression. */
export function graphUrl(prometheusUrl: string, expr: string): string {
  return `${prometheusUrl}/graph?${new URLSearchParams({ 'g0.expr': expr, 'g0.tab': '0', 'g0.range_input': '15m' })}`;
}
