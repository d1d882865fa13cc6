/**
 * The dashboard and the alerts, evaluated by a real Prometheus (Debian's 2.42) over the live stack: the
 * operator and the agents run as `make run` starts them, Prometheus scrapes them through the ServiceMonitors'
 * jobs and paths and evaluates the PrometheusRule's groups. Every dashboard query and every alert's watched
 * expression must return series through the HTTP API. Series that exist only after something failed are
 * caused here first: an ARM 429 and an ARM 500 (throttles, reconcile errors, retries), a token request the agent
 * denies, cache hits and misses, and a refresh-ahead (the agents run with a refresh window as long as a token's life).
 *
 * The same live objects go through the Argo CD health check (lua5.1): Healthy, and Degraded on PolicyDenied.
 *
 * Out of reach locally: kube-state-metrics' series (kube_daemonset_*), since no kube-state-metrics runs here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { parser } from '@prometheus-io/lezer-promql';
import { GROUP, PODIDENTITY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { assess } from '../deploy/argocd-health.js';
import { alertQueries, dashboardQueries, EXTERNAL_SERIES, OWN_PREFIXES, type Query } from '../deploy/metrics-contract.js';
import { netnsAvailable } from '../../dev/local-cluster/netns/netns.js';
import { waitFor } from '../../dev/support/wait.js';
import { startStackPrometheus, type RunningPrometheus } from '../../dev/local-cluster/prometheus.js';
import { REPO, startStack, type PodHandle, type Stack } from '../../dev/local-cluster/stack.js';

const run = promisify(execFile);
const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';
const TOKEN_URL = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/';
/** Series no program of ours exposes and nothing in the local stack produces (kube-state-metrics). */
const NOT_LOCAL = Object.keys(EXTERNAL_SERIES).filter((s) => s.startsWith('kube_'));

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];
const COMPARISONS = new Set(['Eql', 'Neq', 'Gtr', 'Lss', 'Gte', 'Lte']);

/**
 * What an alert watches: its expression with the threshold comparisons taken off (their left-hand side), and
 * of an `or` its first operand. `up == 0` watches `up`; healthy, the alert is silent but the series exist.
 */
export function watchedExpression(expr: string): string {
  const strip = (node: SyntaxNode): string => {
    if (node.name === 'PromQL' && node.firstChild) return strip(node.firstChild);
    if (node.name === 'ParenExpr' && node.firstChild) return strip(node.firstChild);
    if (node.name !== 'BinaryExpr') return expr.slice(node.from, node.to);
    const lhs = node.firstChild!;
    const op = lhs.nextSibling!;
    const isBool = !!node.getChild('BoolModifier');
    if ((COMPARISONS.has(op.name) && !isBool) || op.name === 'Or') return strip(lhs);
    return expr.slice(node.from, node.to);
  };
  return strip(parser.parse(expr).topNode);
}

/** Grafana's variables as an "All" selection and a fixed rate window. */
function plainPromQL(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '1m').replace(/\$\{?(node|controller)\}?/g, '.*');
}

const usesOnlyLocalSeries = (q: Query) => !NOT_LOCAL.some((s) => q.expr.includes(s));

describe('dashboard and alerts on a real Prometheus over the live stack', { skip, timeout: 600_000 }, () => {
  let stack: Stack;
  let prom: RunningPrometheus;
  let custom: CustomObjectsApi;

  before(async () => {
    // Every cache hit is due for a refresh-ahead (margin 300 s + 3300 s = the emulator's 1 h token lifetime), so
    // the refresh series exists after the first hit.
    stack = await startStack({ netns: true, agentArgs: ['--cache-safety-margin=300', '--cache-refresh-ahead=3300'] });
    custom = stack.kc.makeApiClient(CustomObjectsApi);
    prom = await startStackPrometheus(stack, '1s');
  });
  after(async () => {
    await prom?.stop();
    await stack?.stop();
  });

  async function curl(p: PodHandle, query = ''): Promise<number> {
    const { stdout } = await run('ip', ['netns', 'exec', p.netns!, 'curl', '-s', '-o', '/dev/null', '-m', '10', '-w', '%{http_code}', '-H', 'Metadata: true', TOKEN_URL + query], { encoding: 'utf8' });
    return Number(stdout);
  }

  test('Prometheus scrapes the operator and every agent under the ServiceMonitors\' job names', async () => {
    const up = await waitFor('every target up', async () => {
      const r = await prom.query('up');
      return r.length === 1 + stack.nodes.length && r.every((s) => s.value[1] === '1') ? r : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    assert.deepEqual(up.map((s) => s.metric['job']).sort(), ['podidentity-agent-metrics', 'podidentity-agent-metrics', 'podidentity-operator-metrics']);
    assert.deepEqual(up.filter((s) => s.metric['job'] === 'podidentity-agent-metrics').map((s) => s.metric['node']).sort(), stack.nodes.map((n) => n.name).sort());
    const build = await prom.query('podidentity_operator_build_info or podidentity_agent_build_info');
    assert.equal(build.length, 1 + stack.nodes.length, 'build_info from every program');
  });

  test('every dashboard query and every alert\'s watched series return data, the failure series included', async () => {
    await waitFor('every PodIdentity Ready', async () => (await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, 'wait', '--for=condition=Ready', 'pid', '--all', '-A', '--timeout=5s'], { encoding: 'utf8' }).catch(() => undefined)) !== undefined, { timeoutMs: 120_000, intervalMs: 1000 });
    // Tokens: a miss then a hit for every pod (upstream latency, cache), and one request the agent denies.
    for (const p of stack.pods) for (let i = 0; i < 2; i++) assert.equal(await curl(p), 200, `${p.namespace}/${p.name}`);
    assert.equal(await curl(stack.pods[0]!, '&client_id=00000000-0000-4000-8000-00000000beef'), 400, 'a client_id no PodIdentity of the pod has is denied');
    // ARM: one 429 (throttles, requeue) and one 500 (a reconcile error, retried), each on the identity read that a
    // spec change triggers.
    stack.emu.faults.set({ match: { method: 'GET', route: 'identities.get' }, status: 429, retryAfterSeconds: 1, times: 1 });
    stack.emu.faults.set({ match: { method: 'GET', route: 'identities.get' }, status: 500, times: 1 });
    for (const touched of ['one', 'two']) {
      await custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: 'demo', plural: PODIDENTITY_PLURAL, name: 'web', body: { spec: { identity: { managed: { tags: { team: 'storefront', touched } } } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }

    const queries = [
      ...dashboardQueries(join(REPO, 'config/grafana/podidentity-dashboard.json')).map((q) => ({ ...q, expr: plainPromQL(q.expr) })),
      ...alertQueries(join(REPO, 'config/prometheus/alerts.yaml')).map((q) => ({ ...q, expr: watchedExpression(q.expr) })),
    ];
    const local = queries.filter(usesOnlyLocalSeries);
    assert.ok(local.length >= 30 && queries.length - local.length <= 2, `${queries.length - local.length} queries need kube-state-metrics`);
    const empty = await waitFor('every query to return series', async () => {
      const missing: string[] = [];
      for (const q of local) if ((await prom.query(q.expr)).length === 0) missing.push(`${q.where}: ${q.expr}`);
      return missing.length === 0 ? missing : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2000 }).catch(async () => {
      const missing: string[] = [];
      for (const q of local) if ((await prom.query(q.expr)).length === 0) missing.push(`${q.where}: ${q.expr}`);
      return missing;
    });
    assert.deepEqual(empty, []);
    // The failure series really carry the failures caused above.
    assert.ok((await prom.query('sum(podidentity_operator_azure_throttled_total{operation="identities.get"}) > 0')).length === 1, 'the 429 is counted');
    assert.ok((await prom.query('sum(podidentity_operator_reconcile_total{result="error"}) > 0')).length === 1, 'the 500 failed a reconcile');
    assert.ok((await prom.query('sum(podidentity_agent_token_requests_total{result="denied"}) > 0')).length === 1, 'the denied request is counted');
    assert.ok((await prom.query('sum(podidentity_operator_azure_request_duration_seconds_count{code="4xx"}) > 0')).length === 1, 'the 429 as a status class');
  });

  test('every rule evaluates without error in Prometheus\' rule engine', async () => {
    const body = await waitFor('rules evaluated', async () => {
      const res = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
      const rules = res.data.groups.flatMap((g) => g.rules);
      return rules.length > 0 && rules.every((r) => r.health !== 'unknown') ? rules : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500 });
    assert.equal(body.length, alertQueries(join(REPO, 'config/prometheus/alerts.yaml')).length);
    assert.deepEqual(body.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`), []);
    // Healthy stack: nothing that watches our own programs fires.
    const firing = ((await (await fetch(`${prom.url}/api/v1/alerts`)).json()) as { data: { alerts: { labels: { alertname: string }; state: string }[] } }).data.alerts;
    assert.deepEqual(firing.filter((a) => a.state === 'firing' && ['PodIdentityAgentDown', 'PodIdentityOperatorDown'].includes(a.labels.alertname)), []);
  });

  test('Argo CD\'s health check reads the live PodIdentities: Healthy when Ready, Degraded on PolicyDenied', async () => {
    const list = (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL })) as { items: PodIdentity[] };
    assert.ok(list.items.length >= stack.pods.length);
    for (const pid of list.items) {
      if (pid.metadata?.name === 'web') continue; // the test above changed its spec; it may be mid-reconcile
      assert.deepEqual((await assess(pid)).status, 'Healthy', `${pid.metadata?.namespace}/${pid.metadata?.name}`);
    }
    // The demo policy allows Reader and Storage Blob Data Reader only.
    await custom.createNamespacedCustomObject({
      group: GROUP, version: VERSION, namespace: 'demo', plural: PODIDENTITY_PLURAL,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name: 'too-strong', namespace: 'demo' }, spec: { identity: { managed: {} }, mode: 'Federated', serviceAccounts: ['web'], roleAssignments: [{ role: 'Owner', scope: `/subscriptions/${stack.emu.subscriptionId}/resourceGroups/demo-data` }] } },
    });
    const denied = await waitFor('the PolicyDenied status', async () => {
      const pid = (await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'demo', plural: PODIDENTITY_PLURAL, name: 'too-strong' })) as PodIdentity;
      return pid.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'PolicyDenied') ? pid : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    const health = await assess(denied);
    assert.equal(health.status, 'Degraded');
    assert.match(health.message, /^PolicyDenied: /);
  });

  test('the watched expression of an alert is its series without the threshold', () => {
    assert.equal(watchedExpression('up{job="a"} == 0'), 'up{job="a"}');
    assert.equal(watchedExpression('sum(up{job="x"}) == 0 or absent(up{job="x"})'), 'sum(up{job="x"})');
    assert.equal(watchedExpression('a / b > 0.5'), 'a / b');
    assert.equal(watchedExpression('x > bool 1'), 'x > bool 1');
    assert.ok(OWN_PREFIXES.length === 2);
  });
});
