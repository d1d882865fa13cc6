/**
 * The dashboard and the alerts use only metrics and labels the programs really expose. The operator's and
 * the agent's metric registries are built in-process (the same code paths the programs run), every labelled
 * metric gets one series so its label names appear, and `registry.metrics()` is parsed as Prometheus text.
 * The full-stack test runs the same check on live /metrics scrapes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry, Summary, type Metric } from 'prom-client';
import { parse } from 'yaml';
import { AgentMetrics } from '../../agent/metrics.js';
import { registerOperatorMetrics } from '../../operator/metrics.js';
import { Controller } from '../../operator/runtime/controller.js';
import { WorkQueue } from '../../operator/runtime/queue.js';
import { checkMetricsReferenced } from './metrics-contract.js';
import { repoRoot } from '../../dev/local-cluster/kubelet/render.js';

const DASHBOARD = join(repoRoot, 'config/grafana/podidentity-dashboard.json');
const ALERTS = join(repoRoot, 'config/prometheus/alerts.yaml');

/** Gives every labelled metric that has no series yet one series, so the exposition shows its label names. */
async function withEveryLabelSet(registry: Registry): Promise<Registry> {
  for (const metric of registry.getMetricsAsArray() as unknown as Metric[]) {
    const labelNames = (metric as unknown as { labelNames?: string[] }).labelNames ?? [];
    if (labelNames.length === 0 || (await metric.get()).values.length > 0) continue;
    const labels = Object.fromEntries(labelNames.map((l) => [l, 'example']));
    if (metric instanceof Counter) metric.inc(labels, 0);
    else if (metric instanceof Gauge) metric.set(labels, 0);
    else if (metric instanceof Histogram || metric instanceof Summary) metric.observe(labels, 0);
  }
  return registry;
}

async function operatorExposition(): Promise<string> {
  const registry = new Registry();
  registerOperatorMetrics(registry);
  // The runtime registers its metrics when a controller and its queue exist; the operator has both.
  new Controller({ name: 'podidentity', reconcile: async () => undefined, registry });
  new WorkQueue({ name: 'podidentity', registry });
  return (await withEveryLabelSet(registry)).metrics();
}

async function agentExposition(): Promise<string> {
  return (await withEveryLabelSet(new AgentMetrics().registry)).metrics();
}

describe('observability assets against the real metric registries', () => {
  test('every metric and label the dashboard and the alerts use exists', async () => {
    const expositions = [await operatorExposition(), await agentExposition()];
    for (const text of expositions) assert.match(text, /^# TYPE podidentity_(operator|agent)_/m);
    const { problems, references } = checkMetricsReferenced(expositions, DASHBOARD, ALERTS);
    assert.deepEqual(problems, []);
    // Both programs are really covered, not just one.
    const used = new Set(references.map((r) => r.metric));
    assert.ok([...used].some((m) => m.startsWith('podidentity_operator_')));
    assert.ok([...used].some((m) => m.startsWith('podidentity_agent_')));
  });

  test('the dashboard has the panels an SRE needs', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as any;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const panels = (dashboard.panels as any[]).filter((p) => p.type !== 'row');
    const exprs = (title: RegExp) => panels.filter((p) => title.test(p.title)).flatMap((p) => (p.targets as { expr: string }[]).map((t) => t.expr)).join('\n');
    assert.match(exprs(/Token latency/), /histogram_quantile\(0\.5,[\s\S]*histogram_quantile\(0\.99,/);
    assert.match(exprs(/Cache hit ratio/), /cache="hit"/);
    assert.match(exprs(/issued vs denied/), /sum by \(result\)/);
    assert.match(exprs(/Upstream latency/), /upstream_request_duration_seconds_bucket/);
    assert.match(exprs(/Reconciles by result/), /reconcile_total/);
    assert.match(exprs(/Reconcile errors/), /result="error"/);
    assert.match(exprs(/ARM calls/), /azure/);
    assert.match(exprs(/ARM throttles/), /throttl/);
    assert.match(exprs(/PodIdentities by Ready/), /podidentities/);
    assert.match(exprs(/iptables repairs/), /iptables_repairs_total/);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of panels) assert.equal(p.datasource?.uid, '${datasource}', `panel ${p.title} uses the data source variable`);
  });

  test('each alert the issue asks for exists, with a duration, a severity and a summary', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const rules = (parse(readFileSync(ALERTS, 'utf8')).spec.groups as any[]).flatMap((g) => g.rules);
    const byName = new Map(rules.map((r) => [r.alert, r]));
    for (const r of rules) {
      assert.match(r.for, /^\d+m$/, `${r.alert} has a for: duration`);
      assert.ok(['critical', 'warning'].includes(r.labels?.severity), `${r.alert} has a severity`);
      assert.ok(r.annotations?.summary, `${r.alert} has a summary`);
    }
    assert.match(byName.get('PodIdentityAgentDown')?.expr, /up\{job="podidentity-agent-metrics"\} == 0/);
    assert.match(byName.get('PodIdentityTokenLatencyHigh')?.expr, /histogram_quantile\(0\.99,/);
    assert.equal(byName.get('PodIdentityNotReady')?.for, '15m');
    assert.match(byName.get('PodIdentityArmThrottled')?.expr, /throttl/);
    assert.match(byName.get('PodIdentityIptablesDriftRepairedRepeatedly')?.expr, /increase\(podidentity_agent_iptables_repairs_total\[1h\]\)/);
  });
});
