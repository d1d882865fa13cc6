import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { netnsAvailable } from '../../dev/local-cluster/netns/netns.js';
import { startProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { REPO } from '../../dev/local-cluster/stack.js';

/** The README's commands, run as a user would type them (make test itself is what CI runs). */
const run = promisify(execFile);
const skipRun = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';

const OLD = `apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: app, namespace: default}
spec:
  type: 0
  resourceID: /subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app
  clientID: 11111111-1111-4111-8111-111111111111
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: app-binding, namespace: default}
spec: {azureIdentity: app, selector: app}
`;

function makeWithStdin(args: string[], stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('make', ['-s', '--no-print-directory', ...args], { cwd: REPO });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('README commands', () => {
  test('make migrate turns aad-pod-identity YAML into PodIdentities on stdout', async () => {
    for (const [args, mode] of [[[], 'Node'], [['ARGS=--mode Federated'], 'Federated']] as const) {
      const res = await makeWithStdin(['migrate', ...args], OLD);
      assert.equal(res.code, 0, res.stderr);
      const docs = parseAllDocuments(res.stdout).map((d) => d.toJS() as { kind?: string; spec?: { mode?: string; selector?: unknown } } | null);
      const pid = docs.find((d) => d?.kind === 'PodIdentity');
      assert.equal(pid?.spec?.mode, mode);
      assert.deepEqual(pid?.spec?.selector, { matchLabels: { aadpodidbinding: 'app' } });
    }
  });

  test('make migrate reports bad input with the document index and fails', async () => {
    const res = await makeWithStdin(['migrate'], `${OLD}---\napiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata: {name: x, namespace: default}\nspec: {azureIdentity: app}\n`);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /document 3 .*selector/);
  });

  test('make help lists the commands', async () => {
    const { stdout } = await run('make', ['-s', '--no-print-directory', 'help'], { cwd: REPO, encoding: 'utf8' });
    for (const target of ['make run', 'make test', 'make bench', 'make migrate']) assert.ok(stdout.includes(target), target);
  });

  test('make run reaches ready with a demo token, and Ctrl-C leaves nothing behind', { skip: skipRun, timeout: 240_000 }, async () => {
    const started = Date.now();
    const proc = startProcess('make run', 'make', ['-s', '--no-print-directory', 'run'], { cwd: REPO, env: { ...process.env, KUBECONFIG: '' } });
    const output = await waitFor('make run to be ready', () => {
      if (proc.child.exitCode !== null) throw new Error(`make run exited:\n${proc.output()}`);
      return proc.output().includes('Press Ctrl-C to stop') ? proc.output() : undefined;
    }, { timeoutMs: 180_000, intervalMs: 250 });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 180_000, `ready in ${elapsed} ms`);
    assert.match(output, /rgapi\s+rgapi\s+True\s+Ready\s+Federated/);
    assert.match(output, /ip netns exec podid-rgapi-rgapi curl -s -H Metadata:true 'http:\/\/169\.254\.169\.254\/metadata\/identity\/oauth2\/token\?api-version=2018-02-01&resource=https:\/\/management\.azure\.com\/'/);
    assert.match(output, /"xms_mirid": "\/subscriptions\/.*\/userAssignedIdentities\/rgapi_rgapi"/);
    assert.match(output, /listed resource groups through ARM: .*podid-demo/);
    assert.match(output, /NODE_EXTRA_CA_CERTS=\S+ca\.pem/);
    const prometheusUrl = /Prometheus (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    assert.ok(prometheusUrl, 'make run prints the URL of its Prometheus');
    assert.equal((await fetch(`${prometheusUrl}/-/ready`)).status, 200);
    const kubeconfig = /KUBECONFIG=(\S+) kubectl get pid -A/.exec(output)?.[1];
    assert.ok(kubeconfig && existsSync(kubeconfig));
    const { stdout } = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'pid', '-A', '--no-headers'], { encoding: 'utf8' });
    assert.equal(stdout.trim().split('\n').length, 4);

    // Ctrl-C reaches make's whole process group in a terminal; signal the node process make runs.
    const { stdout: pids } = await run('pgrep', ['-f', '-P', String(proc.pid), 'dev/local-cluster/main.ts'], { encoding: 'utf8' });
    for (const pid of pids.trim().split('\n')) process.kill(Number(pid), 'SIGINT');
    assert.equal(await proc.exited, 0);
    assert.match(proc.output(), /stopped/);
    assert.ok(!existsSync(kubeconfig), 'temp files removed');
    assert.equal(await fetch(`${prometheusUrl}/-/ready`).then(() => 'still up', () => 'gone'), 'gone', 'Prometheus stopped');
    const { stdout: namespaces } = await run('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.doesNotMatch(namespaces, /podid-rgapi-rgapi|podid-demo-/);
  });
});
