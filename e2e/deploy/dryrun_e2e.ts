/**
 * `kubectl apply --dry-run=server -k config/default` against the real local API server: every object passes
 * the server's validation and admission (schemas, RBAC role references, PriorityClass limits, ...).
 *
 * The local server is Kubernetes 1.20. It does not serve policy/v1 (PodDisruptionBudget moved there in 1.21,
 * and current clusters need policy/v1: policy/v1beta1 is gone since 1.25). So on 1.20 exactly that object
 * fails with "no matches for kind", and the test checks that it is the only failure; its spec is then
 * validated through policy/v1beta1, whose fields are the same. On a server that serves policy/v1 the
 * command must succeed outright.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { gvk, kustomize, repoRoot, type K8sObject } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);
const NAMESPACE = 'podidentity-system';

let cluster: TestCluster;

interface Result { code: number; stdout: string; stderr: string }

async function kubectl(args: string[], input?: string): Promise<Result> {
  const child = execFile('kubectl', ['--kubeconfig', cluster.kubeconfigPath, ...args], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 32 << 20 });
  if (input !== undefined) child.stdin?.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: string) => (stdout += d));
  child.stderr?.on('data', (d: string) => (stderr += d));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

let servedCache: Promise<Set<string>> | undefined;

/** The group/version/kinds the server serves, from discovery (asked once per file). */
function servedKinds(): Promise<Set<string>> {
  servedCache ??= discoverServedKinds();
  return servedCache;
}

async function discoverServedKinds(): Promise<Set<string>> {
  const { stdout } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'api-resources', '-o', 'wide', '--no-headers'], { encoding: 'utf8' });
  const served = new Set<string>();
  // Discovery lists each resource at its preferred version only; ask for every group version explicitly.
  const { stdout: versions } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'api-versions'], { encoding: 'utf8' });
  for (const gv of versions.split('\n').filter(Boolean)) {
    const { stdout: list } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'get', '--raw', gv.includes('/') ? `/apis/${gv}` : `/api/${gv}`], { encoding: 'utf8' });
    for (const r of (JSON.parse(list) as { resources: { kind: string; name: string }[] }).resources) {
      if (!r.name.includes('/')) served.add(`${gv}/${r.kind}`);
    }
  }
  assert.ok(stdout.length > 0);
  return served;
}

before(async () => {
  cluster = await testCluster();
});

/**
 * Namespaced objects can only be dry-run into a namespace that exists, so the product namespace is created for
 * real (and nothing else is). It is left in place: the local control plane runs no namespace controller, so a
 * deleted namespace would stay Terminating and reject the next dry-run against this server.
 */
async function ensureProductNamespace(): Promise<void> {
  const core = cluster.kc.makeApiClient(CoreV1Api);
  try {
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  const ns = await core.readNamespace({ name: NAMESPACE });
  assert.equal(ns.status?.phase, 'Active', `namespace ${NAMESPACE} is usable`);
}

/** Asserts the server accepted every object of `dir` it serves, and that only unserved kinds failed. */
async function dryRunApply(dir: string): Promise<void> {
  const { objects } = await kustomize(dir);
  const served = await servedKinds();
  const unserved = objects.filter((o) => !served.has(gvk(o)));
  const { stdout: serverVersion } = await run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'version', '-o', 'json'], { encoding: 'utf8' });
  const minor = Number.parseInt((JSON.parse(serverVersion) as { serverVersion: { minor: string } }).serverVersion.minor, 10);
  assert.deepEqual(unserved.map((o) => `${gvk(o)} ${o.metadata.name}`), minor < 21 ? ['policy/v1/PodDisruptionBudget podidentity-operator'] : []);

  // matchConditions (the agent-token webhook's, config/webhook) exist from 1.28; an
  // older server would reject the field, so there the webhook configuration is checked without it.
  const withoutMatchConditions = minor < 28 && objects.some((o) => (o.webhooks as { matchConditions?: unknown }[] | undefined)?.some((w) => w.matchConditions));
  const result = withoutMatchConditions
    ? await kubectl(['apply', '--dry-run=server', '-f', '-'], objects.map((o) => stringify(o.webhooks ? { ...o, webhooks: (o.webhooks as Record<string, unknown>[]).map(({ matchConditions: _dropped, ...w }) => w) } : o)).join('---\n'))
    : await kubectl(['apply', '--dry-run=server', '-k', dir]);
  const accepted = new Set(
    result.stdout.split('\n').filter((l) => /\((server dry run)\)$/.test(l)).map((l) => l.split(' ')[0]),
  );
  for (const o of objects.filter((x) => served.has(gvk(x)))) {
    const group = o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : '';
    const ref = `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
    assert.ok(accepted.has(ref), `${dir}: ${ref} accepted by the server; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  // kubectl warns (does not fail) about objects that exist without its last-applied annotation, e.g. the CRDs
  // the test cluster installed.
  const errors = result.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Warning: '));
  if (unserved.length === 0) {
    assert.equal(result.code, 0, result.stderr);
  } else {
    assert.notEqual(result.code, 0);
    assert.ok(errors.length > 0 && errors.every((l) => /"PodDisruptionBudget" in version "policy\/v1"|^ensure CRDs are installed first$/.test(l)), `${dir}: only the unserved kinds fail:\n${result.stderr}`);
  }
}

describe('kubectl apply --dry-run=server -k config/default', () => {
  test('every object is accepted by the API server, except kinds a 1.20 server does not serve', async () => {
    await ensureProductNamespace();
    await dryRunApply('config/default');
  });

  // The overlays patch the base (JSON and strategic-merge patches, nulls in the uninstall component): the
  // server must accept what they produce too.
  for (const overlay of ['config/overlays/aks', 'config/overlays/dev', 'config/overlays/uninstall']) {
    test(`kubectl apply --dry-run=server -k ${overlay}`, async () => {
      await ensureProductNamespace();
      await dryRunApply(overlay);
    });
  }

  test('the PodDisruptionBudget spec is valid (through policy/v1beta1 where policy/v1 is not served)', async () => {
    const { objects } = await kustomize('config/default');
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget') as K8sObject;
    const served = await servedKinds();
    const body = served.has('policy/v1/PodDisruptionBudget') ? pdb : { ...pdb, apiVersion: 'policy/v1beta1' };
    const namespace = await cluster.namespace('pdb');
    const result = await kubectl(['create', '--dry-run=server', '-n', namespace, '-f', '-'], stringify({ ...body, metadata: { ...body.metadata, namespace } }));
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /poddisruptionbudget\.policy\/podidentity-operator created \(server dry run\)/);
  });
});
