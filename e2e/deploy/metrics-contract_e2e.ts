/** The contract checker itself: it must find what is missing, not just pass. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Histogram, Registry, Summary } from 'prom-client';
import { checkMetricsReferenced, promqlReferences, seriesFromExposition } from './metrics-contract.js';

async function exposition(): Promise<string> {
  const registry = new Registry();
  const h = new Histogram({ name: 'podidentity_agent_demo_seconds', help: 'h', labelNames: ['code', 'cache'], buckets: [0.001, 1], registers: [registry] });
  h.observe({ code: '200', cache: 'hit' }, 0.0005);
  h.observe({ code: '400', cache: 'miss' }, 0.5);
  const c = new Counter({ name: 'podidentity_agent_demo_total', help: 'c', labelNames: ['result'], registers: [registry] });
  c.inc({ result: 'issued' });
  new Summary({ name: 'podidentity_operator_demo_summary', help: 's', labelNames: ['op'], registers: [registry] }).observe({ op: 'x' }, 1);
  return registry.metrics();
}

function files(dashboardExprs: string[], alertExprs: string[]): { dashboard: string; alerts: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'contract-'));
  const dashboard = join(dir, 'dashboard.json');
  const alerts = join(dir, 'alerts.yaml');
  writeFileSync(dashboard, JSON.stringify({ panels: [{ type: 'row', panels: [{ title: 'p', targets: dashboardExprs.map((expr, i) => ({ refId: String(i), expr })) }] }] }));
  writeFileSync(alerts, `groups:\n  - name: g\n    rules:\n${alertExprs.map((e, i) => `      - alert: A${i}\n        expr: ${JSON.stringify(e)}\n`).join('')}`);
  return { dashboard, alerts, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('metrics contract checker', () => {
  test('reads labelled histograms, summaries and counters from exposition text', async () => {
    const series = seriesFromExposition([await exposition()]);
    assert.deepEqual([...(series.get('podidentity_agent_demo_seconds_bucket') ?? [])].sort(), ['cache', 'code', 'le']);
    assert.deepEqual([...(series.get('podidentity_agent_demo_seconds_count') ?? [])].sort(), ['cache', 'code']);
    assert.deepEqual([...(series.get('podidentity_agent_demo_total') ?? [])], ['result']);
    assert.deepEqual([...(series.get('podidentity_operator_demo_summary') ?? [])].sort(), ['op', 'quantile']);
    assert.equal(series.has('podidentity_agent_demo_seconds'), false, 'a histogram is only queryable through its _bucket/_sum/_count series');
  });

  test('reads label names from matchers, by/without and on/ignoring', () => {
    const refs = promqlReferences({ where: 'q', expr: 'histogram_quantile(0.99, sum by (le, node) (rate(a_bucket{cache="hit"}[$__rate_interval]))) > on (job) group_left b{x=~".+"}' });
    assert.deepEqual(refs.map((r) => [r.metric, r.labels]), [['a_bucket', ['cache', 'job', 'le', 'node']], ['b', ['job', 'x']]]);
  });

  test('passes when everything exists, and reports each missing metric, label and syntax error', async () => {
    const text = await exposition();
    const ok = files(
      ['histogram_quantile(0.99, sum by (le, cache) (rate(podidentity_agent_demo_seconds_bucket{code="200", node=~"$node"}[$__rate_interval])))'],
      ['sum by (result) (rate(podidentity_agent_demo_total[5m])) > 0', 'up{job="x"} == 0'],
    );
    try {
      const result = checkMetricsReferenced([text], ok.dashboard, ok.alerts);
      assert.deepEqual(result.problems, []);
      assert.equal(result.references.length, 3);
    } finally {
      ok.cleanup();
    }
    const bad = files(
      ['rate(podidentity_agent_missing_total[5m])', 'sum by (reason) (rate(podidentity_agent_demo_total[5m]))', 'rate(podidentity_agent_demo_total[5m'],
      ['podidentity_agent_demo_seconds > 1', 'some_other_exporter_metric > 0'],
    );
    try {
      const { problems } = checkMetricsReferenced([text], bad.dashboard, bad.alerts);
      assert.equal(problems.length, 5, problems.join('\n'));
      assert.match(problems[0] ?? '', /metric podidentity_agent_missing_total is not exposed/);
      assert.match(problems[1] ?? '', /podidentity_agent_demo_total has no label reason \(it has: result\)/);
      assert.match(problems[2] ?? '', /PromQL syntax error/);
      assert.match(problems[3] ?? '', /metric podidentity_agent_demo_seconds is not exposed/);
      assert.match(problems[4] ?? '', /some_other_exporter_metric is neither ours nor a known external series/);
    } finally {
      bad.cleanup();
    }
  });
});
