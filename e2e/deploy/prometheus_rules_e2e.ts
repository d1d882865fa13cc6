/**
 * The PrometheusRule's alerts, checked and unit-tested by Prometheus' own promtool (Debian's prometheus 2.42):
 * `promtool check rules` on the rule groups it carries, `promtool test rules` on config/prometheus/alerts_test.yaml,
 * which must have a firing and a silent case for every alert.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { repoRoot } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);

interface RuleGroup {
  name: string;
  rules: { alert?: string; record?: string; expr: string }[];
}
interface PromtoolTests {
  rule_files: string[];
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

const prometheusRule = parse(readFileSync(join(repoRoot, 'config/prometheus/alerts.yaml'), 'utf8')) as { spec: { groups: RuleGroup[] } };
const unitTests = parse(readFileSync(join(repoRoot, 'config/prometheus/alerts_test.yaml'), 'utf8')) as PromtoolTests;

/** Runs promtool in a directory holding the rule groups as rules.yaml and a copy of alerts_test.yaml. */
async function promtool(args: (dir: string) => string[]): Promise<{ ok: boolean; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'podid-promtool-'));
  try {
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: prometheusRule.spec.groups }));
    copyFileSync(join(repoRoot, 'config/prometheus/alerts_test.yaml'), join(dir, 'alerts_test.yaml'));
    const { stdout, stderr } = await run('promtool', args(dir), { cwd: dir, encoding: 'utf8' });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('alerts under promtool', () => {
  test('promtool check rules passes on the PrometheusRule\'s groups', async () => {
    const r = await promtool((dir) => ['check', 'rules', join(dir, 'rules.yaml')]);
    assert.ok(r.ok, r.output);
    const count = prometheusRule.spec.groups.reduce((n, g) => n + g.rules.length, 0);
    assert.match(r.output, new RegExp(`SUCCESS: ${count} rules found`));
  });

  test('promtool test rules passes', async () => {
    assert.deepEqual(unitTests.rule_files, ['rules.yaml']);
    const r = await promtool(() => ['test', 'rules', 'alerts_test.yaml']);
    assert.ok(r.ok, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  test('every alert has a firing and a silent case', () => {
    const alerts = prometheusRule.spec.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
    assert.ok(alerts.length >= 9);
    const cases = unitTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      assert.ok(cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0), `${alert} has no firing case`);
      assert.ok(cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0), `${alert} has no silent case`);
    }
    for (const c of cases) assert.ok(alerts.includes(c.alertname), `a case for ${c.alertname}, which alerts.yaml does not have`);
  });
});
