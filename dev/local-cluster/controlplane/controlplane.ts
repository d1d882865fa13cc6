import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess, type ManagedProcess } from '../../support/processes.js';
import { freePorts } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';
import { resolveBinaries, type ControlPlaneBinaries } from './binaries.js';

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  readonly server: string;
  /** Static admin bearer token (group system:masters). */
  readonly token: string;
  /** PEM of the API server's self-signed serving certificate, which is its own CA. */
  readonly caPem: string;
  readonly caPath: string;
  /** A kubeconfig for the admin user. */
  readonly kubeconfigPath: string;
  /** The service-account issuer; its OIDC discovery is served anonymously by the API server itself. */
  readonly issuer: string;
  readonly dir: string;
  readonly pids: { etcd: number; kubeApiserver: number };
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  binaries?: ControlPlaneBinaries;
  /** Where to write logs and state; a fresh temp dir by default. Removed on stop. */
  dir?: string;
  readyTimeoutMs?: number;
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binaries = options.binaries ?? resolveBinaries();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'podid-cp-'));
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    for (const proc of processes.reverse()) await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [etcdClient, etcdPeer, securePort] = await freePorts(3);
    const server = `https://127.0.0.1:${securePort}`;
    const token = randomBytes(24).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));

    const etcd = startProcess(
      'etcd',
      binaries.etcd,
      [
        `--name=podid-test`,
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=podid-test=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      { logFile: join(dir, 'etcd.log'), env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env['ETCD_UNSUPPORTED_ARCH'] ?? '' } },
    );
    processes.push(etcd);

    const certDir = join(dir, 'certs');
    const apiserver = startProcess(
      'kube-apiserver',
      binaries.kubeApiserver,
      [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        `--secure-port=${securePort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--cert-dir=${certDir}`,
        `--token-auth-file=${join(dir, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        `--service-account-key-file=${join(dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
        `--service-account-issuer=${server}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--enable-priority-and-fairness=false',
        // No kube-proxy here: the API server reaches Services (the admission webhook's) at their Endpoints'
        // addresses instead of the ClusterIP. Its webhook clients use the same service resolver.
        '--enable-aggregator-routing=true',
        '--watch-cache=true',
        '--v=0',
      ],
      { logFile: join(dir, 'kube-apiserver.log') },
    );
    processes.push(apiserver);

    const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
    const caPath = join(certDir, 'apiserver.crt');
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        if (apiserver.child.exitCode !== null) {
          throw new Error(`kube-apiserver exited (${apiserver.child.exitCode}):\n${apiserver.output().slice(-3000)}`);
        }
        const ca = readFileSync(caPath, 'utf8');
        const res = await get(`${server}/readyz`, { ca, token });
        return res.status === 200;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\netcd output:\n${etcd.output().slice(-2000)}\nkube-apiserver output:\n${apiserver.output().slice(-3000)}`);
    });
    const caPem = readFileSync(caPath, 'utf8');

    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml({ server, caPem, token }), { mode: 0o600 });

    const cp: ControlPlane = {
      server,
      token,
      caPem,
      caPath,
      kubeconfigPath,
      issuer: server,
      dir,
      pids: { etcd: etcd.pid, kubeApiserver: apiserver.pid },
      stop,
    };
    await allowAnonymousIssuerDiscovery(cp);
    return cp;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * A kubeconfig for the static admin token. `tlsServerName` is for clients that reach the API server through
 * a forwarder (a node network namespace): its self-signed certificate names "kubernetes", not that address.
 */
export function kubeconfigYaml({ server, caPem, token, tlsServerName }: { server: string; caPem: string; token: string; tlsServerName?: string }): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: local`,
    `  cluster: {server: "${server}", certificate-authority-data: "${ca}"${tlsServerName ? `, tls-server-name: "${tlsServerName}"` : ''}}`,
    'users:',
    `- name: admin`,
    `  user: {token: "${token}"}`,
    'contexts:',
    `- name: local`,
    `  context: {cluster: local, user: admin, namespace: default}`,
    'current-context: local',
    '',
  ].join('\n');
}

/**
 * Azure AD (here: the emulator) fetches the issuer's OIDC discovery and JWKS without credentials, as it
 * does from a real AKS issuer. Kubernetes serves them to service accounts only unless this binding exists.
 */
async function allowAnonymousIssuerDiscovery(cp: ControlPlane): Promise<void> {
  const body = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'podid-test:service-account-issuer-discovery' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
  };
  await waitFor('issuer discovery binding', async () => {
    const res = await get(`${cp.server}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings`, {
      ca: cp.caPem,
      token: cp.token,
      method: 'POST',
      body: JSON.stringify(body),
    });
    if (res.status === 201 || res.status === 409) return true;
    throw new Error(`creating ClusterRoleBinding: ${res.status} ${res.body}`);
  });
}

interface GetOptions {
  ca: string;
  token?: string;
  method?: string;
  body?: string;
}

/** A tiny HTTPS client for bootstrap calls made before a kubeconfig exists. */
export function get(url: string, options: GetOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.token) headers['Authorization'] = `Bearer ${options.token}`;
    if (options.body) headers['Content-Type'] = 'application/json';
    const req = request(url, { method: options.method ?? 'GET', ca: options.ca, headers, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(options.body);
  });
}
