/**
 * The Argo CD health check for PodIdentity, run on Debian's lua5.1 (Argo CD's interpreter is Lua 5.1) against
 * its health_test.yaml, the way Argo CD's own resource_customizations tests run each case. Also holds the
 * argocd-cm snippet to the same script, and the test data to every Ready reason the operator can set; and the
 * sync waves and prune protection the CRDs and samples carry.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { crdFiles } from '../../dev/local-cluster/controlplane/crds.js';
import { assess, CHECK_DIR, HEALTH_LUA } from './argocd-health.js';
import { parseObjects, repoRoot } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);

interface HealthCase {
  healthStatus: { status: string; message: string };
  inputPath: string;
}
const cases = (parse(readFileSync(join(CHECK_DIR, 'health_test.yaml'), 'utf8')) as { tests: HealthCase[] }).tests;

describe('Argo CD health check for PodIdentity (lua5.1)', () => {
  test('the interpreter is Lua 5.1, as in Argo CD', async () => {
    const { stdout, stderr } = await run('lua5.1', ['-v'], { encoding: 'utf8' });
    assert.match(stdout + stderr, /Lua 5\.1/);
  });

  for (const c of cases) {
    test(`${c.inputPath} is ${c.healthStatus.status}`, async () => {
      const obj = parse(readFileSync(join(CHECK_DIR, c.inputPath), 'utf8')) as unknown;
      assert.deepEqual(await assess(obj), c.healthStatus);
    });
  }

  test('every test data file has a case, and every case a file', () => {
    const files = readdirSync(join(CHECK_DIR, 'testdata')).map((f) => `testdata/${f}`).sort();
    assert.deepEqual(cases.map((c) => c.inputPath).sort(), files);
  });

  test('the test data covers every condition reason the operator sets', () => {
    // The reconciler's steps set their conditions in their own modules; a policy decision's reason becomes Ready's.
    const dir = join(repoRoot, 'operator/podidentity');
    const source = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('_test.ts')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
    const falseReasons = new Set([...source.matchAll(/\bbad\(\s*'([A-Za-z]+)'/g)].map((m) => m[1]!));
    const trueReasons = new Set([...source.matchAll(/\bok\(\s*'([A-Za-z]+)'/g)].map((m) => m[1]!));
    // Ready=False falls back to this reason when a step has no condition yet.
    falseReasons.add('Reconciling');
    // Reasons chosen by a ternary: `bad(cond ? 'A' : 'B', …)` and `ok(cond ? 'A' : 'B', …)`.
    for (const m of source.matchAll(/\b(bad|ok)\([^,]*\?\s*'([A-Za-z]+)'\s*:\s*'([A-Za-z]+)'/g)) {
      for (const r of [m[2]!, m[3]!]) (m[1] === 'bad' ? falseReasons : trueReasons).add(r);
    }
    const policy = readFileSync(join(repoRoot, 'operator/policy/evaluate.ts'), 'utf8');
    for (const m of policy.matchAll(/\breason: '([A-Za-z]+)'/g)) falseReasons.add(m[1]!);
    for (const m of policy.matchAll(/\breason = [^;]*\?\s*'([A-Za-z]+)'\s*:\s*'([A-Za-z]+)'/g)) falseReasons.add(m[1]!).add(m[2]!);
    assert.ok(falseReasons.size >= 10 && trueReasons.size >= 5, `reasons found in the reconciler: ${[...falseReasons]} / ${[...trueReasons]}`);
    const readyFalse = new Set<string>();
    const anyTrue = new Set<string>();
    for (const c of cases) {
      const obj = parse(readFileSync(join(CHECK_DIR, c.inputPath), 'utf8')) as { status?: { conditions?: { type: string; status: string; reason: string }[] } };
      for (const cond of obj.status?.conditions ?? []) {
        if (cond.type === 'Ready' && cond.status === 'False') readyFalse.add(cond.reason);
        if (cond.status === 'True') anyTrue.add(cond.reason);
      }
    }
    assert.deepEqual([...falseReasons].filter((r) => !readyFalse.has(r)), [], 'reasons with no Ready=False test case');
    assert.deepEqual([...trueReasons].filter((r) => !anyTrue.has(r)), [], 'True reasons with no test case');
  });

  test('the argocd-cm snippet carries exactly health.lua under the key Argo CD reads', () => {
    const [cm] = parseObjects(readFileSync(join(repoRoot, 'config/argocd/argocd-cm.yaml'), 'utf8'));
    assert.equal(cm?.kind, 'ConfigMap');
    assert.equal(cm?.metadata.name, 'argocd-cm');
    assert.equal(cm?.data['resource.customizations.health.podidentity.dev_PodIdentity'], readFileSync(HEALTH_LUA, 'utf8'));
  });

  test('sync waves: CRDs, then policies, then PodIdentities; the CRDs are never pruned', () => {
    const wave = (o: { metadata: { annotations?: Record<string, string> } }) => Number(o.metadata.annotations?.['argocd.argoproj.io/sync-wave'] ?? '0');
    const crds = crdFiles().flatMap((f) => parseObjects(readFileSync(join(repoRoot, 'crds', f), 'utf8')));
    const samples = readdirSync(join(repoRoot, 'config/samples')).flatMap((f) => parseObjects(readFileSync(join(repoRoot, 'config/samples', f), 'utf8')));
    const policies = samples.filter((o) => o.kind === 'PodIdentityPolicy');
    const identities = samples.filter((o) => o.kind === 'PodIdentity');
    assert.ok(crds.length === 2 && policies.length > 0 && identities.length > 0);
    for (const crd of crds) {
      assert.equal(crd.metadata.annotations?.['argocd.argoproj.io/sync-options'], 'Prune=false', `${crd.metadata.name} is protected from pruning`);
      for (const p of policies) assert.ok(wave(crd) < wave(p), `CRD ${crd.metadata.name} before policy ${p.metadata.name}`);
    }
    for (const p of policies) for (const i of identities) assert.ok(wave(p) < wave(i), `policy ${p.metadata.name} before PodIdentity ${i.metadata.name}`);
  });
});
