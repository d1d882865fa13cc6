/**
 * In-cluster configuration without client-node (lib/k8s/in-cluster.ts) against the real API server: the
 * mounted CA is the only trust anchor, and the mounted token is re-read so a rotated token is used.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inClusterApiServer } from '../../lib/k8s/in-cluster.js';
import { getJson, RawApiError } from '../../lib/k8s/rest.js';
import { ensureCa, makeTempDir, removeDir } from '../../dev/azure-emulator/tls.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';

let cluster: TestCluster;
let dir: string;

before(async () => {
  cluster = await testCluster();
  dir = await makeTempDir('podid-in-cluster-');
});

after(async () => {
  if (dir) await removeDir(dir);
});

/** A service-account directory as the kubelet mounts it, and the env the kubelet sets, for the test's API server. */
function mountedServiceAccount(name: string): { dir: string; env: NodeJS.ProcessEnv } {
  const url = new URL(cluster.server);
  return { dir: join(dir, name), env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port || '443' } };
}

function writeMount(saDir: string, files: { token?: string; caPem?: string }): void {
  mkdirSync(saDir, { recursive: true });
  if (files.token !== undefined) writeFileSync(join(saDir, 'token'), files.token);
  if (files.caPem !== undefined) writeFileSync(join(saDir, 'ca.crt'), files.caPem);
}

test('in-cluster config reaches the API server with the mounted token, verified against the mounted CA', async () => {
  const mount = mountedServiceAccount('good');
  writeMount(mount.dir, { token: cluster.token + '\n', caPem: cluster.caPem });
  const api = inClusterApiServer({ env: mount.env, dir: mount.dir });
  const ns = await getJson<{ metadata?: { name?: string } }>(api, '/api/v1/namespaces/default', {});
  assert.equal(ns.metadata?.name, 'default');
});

test('an API server whose certificate the mounted CA did not sign is refused (no fallback to other roots)', async () => {
  const otherCa = await ensureCa(join(dir, 'other-ca'));
  const mount = mountedServiceAccount('wrong-ca');
  writeMount(mount.dir, { token: cluster.token, caPem: otherCa.certPem });
  const api = inClusterApiServer({ env: mount.env, dir: mount.dir });
  await assert.rejects(getJson(api, '/api/v1/namespaces/default', {}), (err: NodeJS.ErrnoException) => {
    assert.ok(!(err instanceof RawApiError), `the request reached the API server: ${err.message}`);
    assert.match(err.code ?? '', /CERT|SIGNATURE|SELF_SIGNED|VERIFY/);
    return true;
  });
});

test('NODE_EXTRA_CA_CERTS naming the API server\'s real CA does not widen the mounted CA', async () => {
  const otherCa = await ensureCa(join(dir, 'other-ca'));
  const mount = mountedServiceAccount('extra-ca');
  writeMount(mount.dir, { token: cluster.token, caPem: otherCa.certPem });
  const realCa = join(dir, 'real-ca.pem');
  writeFileSync(realCa, cluster.caPem);
  const lib = (file: string) => JSON.stringify(fileURLToPath(new URL(`../../lib/k8s/${file}`, import.meta.url)));
  const code = `
    const { inClusterApiServer } = await import(${lib('in-cluster.ts')});
    const { getJson } = await import(${lib('rest.ts')});
    const api = inClusterApiServer({ env: ${JSON.stringify(mount.env)}, dir: ${JSON.stringify(mount.dir)} });
    await getJson(api, '/api/v1/namespaces/default', {}).then(() => console.log('reached'), (err) => console.log(err.code ?? err.message));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env: { ...process.env, NODE_EXTRA_CA_CERTS: realCa }, timeout: 120_000 });
  assert.match(stdout.trim(), /CERT|SIGNATURE|SELF_SIGNED|VERIFY/);
});

test('a rotated token is used once the read token is older than its maximum age; until then, the read one', async () => {
  const mount = mountedServiceAccount('rotation');
  writeMount(mount.dir, { token: 'not-a-valid-token', caPem: cluster.caPem });
  let now = 1_000_000;
  const api = inClusterApiServer({ env: mount.env, dir: mount.dir, tokenMaxAgeMs: 60_000, now: () => now });
  const status = () => getJson(api, '/api/v1/namespaces/default', {}).then(() => 200, (err: unknown) => (err instanceof RawApiError ? err.code : -1));
  assert.equal(await status(), 401);

  writeMount(mount.dir, { token: cluster.token });
  now += 59_000;
  assert.equal(await status(), 401, 'the token read a minute ago is still used');
  now += 2_000;
  assert.equal(await status(), 200, 'the rotated token is read');
});
