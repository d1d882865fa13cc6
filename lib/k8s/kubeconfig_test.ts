import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { inClusterApiServer, inClusterAvailable } from './in-cluster.js';
import { kubeConfigSource } from './kubeconfig.js';

const dir = mkdtempSync(join(tmpdir(), 'podid-kubeconfig-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const inCluster = () => true;
const notInCluster = () => false;

test('an explicit kubeconfig path wins over KUBECONFIG and in-cluster', () => {
  assert.deepEqual(kubeConfigSource('/etc/kc', { KUBECONFIG: '/other' }, inCluster), { kind: 'kubeconfig', path: '/etc/kc' });
});

test('KUBECONFIG wins over in-cluster, and is handed to client-node whole (it may be a list)', () => {
  assert.deepEqual(kubeConfigSource(undefined, { KUBECONFIG: '/a:/b' }, inCluster), { kind: 'kubeconfig' });
});

test('in a pod, in-cluster config wins over a ~/.kube/config', () => {
  const home = join(dir, 'home-with-config');
  mkdirSync(join(home, '.kube'), { recursive: true });
  writeFileSync(join(home, '.kube', 'config'), 'apiVersion: v1\n');
  assert.deepEqual(kubeConfigSource(undefined, { HOME: home }, inCluster), { kind: 'in-cluster' });
  assert.deepEqual(kubeConfigSource(undefined, { HOME: home }, notInCluster), { kind: 'kubeconfig', path: join(home, '.kube', 'config') });
});

test('no configuration at all is an error naming the three ways to give one (an empty HOME is no home)', () => {
  assert.throws(() => kubeConfigSource(undefined, { HOME: '' }, notInCluster), /--kubeconfig.*KUBECONFIG.*KUBERNETES_SERVICE_HOST/);
});

test('in-cluster needs both the Service address and a mounted token', () => {
  const sa = join(dir, 'sa');
  mkdirSync(sa, { recursive: true });
  const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
  assert.equal(inClusterAvailable(env, sa), false, 'no token file');
  writeFileSync(join(sa, 'token'), 't');
  assert.equal(inClusterAvailable(env, sa), true);
  assert.equal(inClusterAvailable({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, sa), false, 'no port');
});

test('in-cluster config names the variable or file that is missing or malformed', () => {
  const sa = join(dir, 'sa-errors');
  mkdirSync(sa, { recursive: true });
  assert.throws(() => inClusterApiServer({ env: { KUBERNETES_SERVICE_PORT: '443' }, dir: sa }), /KUBERNETES_SERVICE_HOST is not set/);
  assert.throws(() => inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: 'https' }, dir: sa }), /KUBERNETES_SERVICE_PORT must be a port number, got "https"/);
  assert.throws(() => inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, dir: sa }), /cannot read the API server CA .*ca\.crt/);
});

test('in-cluster config is https on any port, with IPv6 hosts bracketed', () => {
  const sa = join(dir, 'sa-url');
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'ca.crt'), 'unused by this test');
  assert.equal(inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '80' }, dir: sa }).server, 'https://10.96.0.1:80');
  assert.equal(inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir: sa }).server, 'https://[fd00::1]:443');
});

test('an empty or unreadable token fails the request with the file named, never with a token in the message', async () => {
  const sa = join(dir, 'sa-token');
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'ca.crt'), 'unused by this test');
  const api = inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, dir: sa, tokenMaxAgeMs: 0 });
  await assert.rejects(api.credentials(), /cannot read the service-account token .*token: ENOENT/);
  writeFileSync(join(sa, 'token'), ' \n');
  await assert.rejects(api.credentials(), /service-account token .*token is empty/);
  writeFileSync(join(sa, 'token'), 'secret-value\n');
  assert.deepEqual((await api.credentials()).headers, { Authorization: 'Bearer secret-value' });
});
