import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { inClusterApiServer } from './in-cluster.js';
import { kubeConfigApiServer } from './kubeconfig.js';
import type { ApiServer } from './api-server.js';
import { getJson, RawApiError } from './rest.js';

let dir: string;
let server: Server;
let port: number;
/** Authorization headers the impostor API server received: any at all means the token left the agent. */
const received: string[] = [];

/** A CA (`<name>.pem`, `<name>-key.pem`) made with the openssl CLI; its PEM. */
function makeCa(name: string): string {
  execFileSync('openssl', ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, `${name}-key.pem`), '-out', join(dir, `${name}.pem`), '-days', '1', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
  return readFileSync(join(dir, `${name}.pem`), 'utf8');
}

/** A serving certificate for 127.0.0.1 signed by the CA `ca`. */
function makeLeaf(ca: string): { cert: string; key: string } {
  writeFileSync(join(dir, 'leaf.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n');
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'leaf-key.pem'), '-out', join(dir, 'leaf.csr'), '-subj', '/CN=impostor'], { stdio: 'ignore' });
  execFileSync('openssl', ['x509', '-req', '-in', join(dir, 'leaf.csr'), '-CA', join(dir, `${ca}.pem`), '-CAkey', join(dir, `${ca}-key.pem`), '-CAcreateserial', '-CAserial', join(dir, 'ca.srl'), '-out', join(dir, 'leaf.pem'), '-days', '1', '-extfile', join(dir, 'leaf.ext')], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'leaf.pem'), 'utf8'), key: readFileSync(join(dir, 'leaf-key.pem'), 'utf8') };
}

let clusterCa: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'podid-in-cluster-unit-'));
  clusterCa = makeCa('cluster-ca');
  // An API server whose certificate a CA other than the mounted one signed.
  makeCa('impostor-ca');
  const leaf = makeLeaf('impostor-ca');
  server = createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    if (req.headers.authorization) received.push(req.headers.authorization);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"kind":"Namespace"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  server?.closeAllConnections();
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A request to the impostor with NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment fails the handshake. */
async function refusedDespiteEnvironment(api: ApiServer): Promise<void> {
  received.length = 0;
  const before = process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
  const warn = process.emitWarning;
  process.emitWarning = () => undefined; // Node warns once that the variable is set; that is the point here
  process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';
  try {
    await assert.rejects(getJson(api, '/api/v1/namespaces/default', {}), (err: NodeJS.ErrnoException) => {
      assert.ok(!(err instanceof RawApiError), `the request reached the API server: ${err.message}`);
      assert.match(err.code ?? err.message, /CERT|SIGNATURE|SELF_SIGNED|VERIFY/);
      return true;
    });
  } finally {
    if (before === undefined) delete process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
    else process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = before;
    process.emitWarning = warn;
  }
  assert.deepEqual(received, [], 'the token reached the impostor');
}

/** A service-account directory as the kubelet mounts it, with the cluster's CA. */
function mount(name: string): string {
  const saDir = join(dir, name);
  mkdirSync(saDir, { recursive: true });
  writeFileSync(join(saDir, 'token'), 'secret-service-account-token');
  writeFileSync(join(saDir, 'ca.crt'), clusterCa);
  return saDir;
}

describe('in-cluster credential source', () => {
  test('TLS downgrade by environment: NODE_TLS_REJECT_UNAUTHORIZED=0 does not make the agent send its token to an API server the mounted CA did not sign', async () => {
    await refusedDespiteEnvironment(inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) }, dir: mount('downgrade') }));
  });

  test('TLS downgrade by environment, kubeconfig: only the kubeconfig itself (insecure-skip-tls-verify) turns verification off', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, caData: Buffer.from(clusterCa).toString('base64'), skipTLSVerify: false }],
      users: [{ name: 'u', token: 'secret-kubeconfig-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await refusedDespiteEnvironment(kubeConfigApiServer(kc));
  });

  test('API server redirection through KUBERNETES_SERVICE_HOST: anything but an IP address or a DNS name is refused, naming the variable', () => {
    const saDir = mount('host');
    for (const host of ['evil.example/steal#', '10.96.0.1@evil.example', 'evil.example:8443', 'evil.example?x=', '', ' 10.96.0.1', '[::1]']) {
      assert.throws(
        () => inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: '443' }, dir: saDir }),
        (err: Error) => err.message.includes('KUBERNETES_SERVICE_HOST'),
        JSON.stringify(host),
      );
    }
    for (const [host, server] of [
      ['10.96.0.1', 'https://10.96.0.1:443'],
      ['fd00::1', 'https://[fd00::1]:443'],
      ['kubernetes.default.svc', 'https://kubernetes.default.svc:443'],
    ] as const) {
      assert.equal(inClusterApiServer({ env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: '443' }, dir: saDir }).server, server);
    }
  });
});
