/**
 * What every benchmark section stands on: the bench's own control plane (so it may restart the API
 * server), the Azure emulator in-process, and helpers that create the Kubernetes and Azure objects an
 * operator would have produced (PodIdentities already Ready, federated credentials in place) so the agent
 * can be measured without the operator.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, TOKEN_EXCHANGE_AUDIENCE, VERSION } from '../../lib/api/types.js';
import { patchStatus } from '../../operator/k8s/objects.js';
import type { IdentityView } from '../azure-emulator/emulator.js';
import { operatorToken, rawRequest, startFixture, type Fixture } from '../azure-emulator/test-fixture.js';
import { get, startControlPlane, type ControlPlane } from '../local-cluster/controlplane/controlplane.js';
import { startProcess, type ManagedProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { installCrds } from '../local-cluster/controlplane/crds.js';

export const RESOURCE = 'https://management.azure.com/';
export const TOKEN_PATH = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`;
export const BENCH_NODE = 'bench-node-0';
const ARM_API = 'api-version=2024-11-30';
const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface BenchEnv {
  cp: ControlPlane;
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  fx: Fixture;
  /** Scratch directory for process logs; stop() copies the logs into `<logsTo>` and removes it. */
  dir: string;
  stop(logsTo?: string): Promise<void>;
  /**
   * Stops kube-apiserver (SIGTERM) and starts it again with the very same command line (same port, same
   * certificates, same etcd); resolves when /readyz answers. The control plane module has no restart, so
   * the new process is the bench's and is stopped by stop().
   */
  restartApiServer(): Promise<{ downMs: number }>;
  /** The running kube-apiserver's PID (a restart changes it). */
  apiServerPid(): number;
}

export async function startEnv(log: (msg: string) => void): Promise<BenchEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'podid-bench-'));
  log('starting the control plane (etcd + kube-apiserver)');
  const cp = await startControlPlane();
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    await installCrds(kc);
    let apiserverPid = cp.pids.kubeApiserver;
    let restarted: ManagedProcess | undefined;
    log('starting the Azure emulator');
    const fx = await startFixture({ principalReplicationDelayMs: 0 });
    // kube-apiserver answers its JWKS only for this media type (406 for a bare application/json).
    fx.emu.seed.trustIssuer({ issuer: cp.issuer, fetchOptions: { ca: cp.caPem, headers: { accept: 'application/jwk-set+json, application/json' } } });
    return {
      cp,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
      fx,
      dir,
      apiServerPid: () => apiserverPid,
      async restartApiServer() {
        const argv = readFileSync(`/proc/${apiserverPid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        const t0 = Date.now();
        const old = restarted;
        if (old) await old.stop();
        else {
          process.kill(apiserverPid, 'SIGTERM');
          await waitFor('the old kube-apiserver to exit', () => !existsSync(`/proc/${apiserverPid}`), { timeoutMs: 60_000, intervalMs: 50 });
        }
        restarted = startProcess('kube-apiserver', argv[0]!, argv.slice(1), { logFile: join(cp.dir, 'kube-apiserver-restarted.log') });
        apiserverPid = restarted.pid;
        await waitFor('restarted kube-apiserver /readyz', async () => (await get(`${cp.server}/readyz`, { ca: cp.caPem, token: cp.token })).status === 200, { timeoutMs: 90_000, intervalMs: 100 });
        return { downMs: Date.now() - t0 };
      },
      async stop(logsTo?: string) {
        await fx.emu.stop();
        await restarted?.stop();
        if (logsTo) {
          mkdirSync(logsTo, { recursive: true });
          for (const f of readdirSync(dir).filter((f) => f.endsWith('.log'))) copyTail(join(dir, f), join(logsTo, f));
          for (const f of readdirSync(cp.dir).filter((f) => f.endsWith('.log'))) copyTail(join(cp.dir, f), join(logsTo, f));
        }
        await cp.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

/** Agent and operator logs can reach tens of MB in a full run: keep the last 8 MB of each. */
function copyTail(from: string, to: string, maxBytes = 8 * 2 ** 20): void {
  const size = statSync(from).size;
  if (size <= maxBytes) return void cpSync(from, to);
  const fd = openSync(from, 'r');
  try {
    const buf = Buffer.alloc(maxBytes);
    readSync(fd, buf, 0, maxBytes, size - maxBytes);
    writeFileSync(to, Buffer.concat([Buffer.from(`[first ${size - maxBytes} bytes dropped]\n`), buf.subarray(buf.indexOf(10) + 1)]));
  } finally {
    closeSync(fd);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/** A pod with its identity, as the agent will see it. */
export interface BoundPod {
  namespace: string;
  name: string;
  uid: string;
  serviceAccount: string;
  ip: string;
  identity: IdentityView;
  podIdentity: string;
}

/** Loopback source addresses for simulated pods: 127.0.1.1, 127.0.1.2, … (never 127.0.0.1, the node). */
export function podAddress(index: number): string {
  const n = index + 1;
  return `127.${1 + Math.floor(n / 65_025)}.${1 + Math.floor((n % 65_025) / 255)}.${1 + (n % 255)}`;
}

export class BenchObjects {
  private armToken?: { value: string; at: number };

  constructor(private readonly env: BenchEnv) {}

  async namespace(prefix: string): Promise<string> {
    const name = `${prefix}-${randomUUID().slice(0, 6)}`;
    await this.env.core.createNamespace({ body: { metadata: { name, labels: { 'podidentity.dev/bench': 'true' } } } });
    return name;
  }

  async serviceAccount(namespace: string, name: string): Promise<void> {
    await this.env.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  }

  /** A user-assigned identity in the emulator (seeded: no ARM call, no replication delay). */
  identity(name: string): IdentityView {
    return this.env.fx.emu.seed.identity({ resourceGroup: 'bench-rg', name });
  }

  /** The federated credential an operator would have written, through ARM like the operator. */
  async federatedCredential(identity: IdentityView, namespace: string, serviceAccount: string): Promise<void> {
    const token = await this.token();
    const name = `${namespace}-${serviceAccount}`.slice(0, 120);
    const res = await rawRequest(`${this.env.fx.emu.armEndpoint}${identity.id}/federatedIdentityCredentials/${name}?${ARM_API}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ properties: { issuer: this.env.cp.issuer, subject: `system:serviceaccount:${namespace}:${serviceAccount}`, audiences: [TOKEN_EXCHANGE_AUDIENCE] } }),
    });
    if (res.status >= 300) throw new Error(`PUT federated credential ${name}: ${res.status} ${res.text}`);
  }

  /** A Federated PodIdentity with its status written Ready, as if the operator had reconciled it. */
  async readyPodIdentity(namespace: string, name: string, identity: IdentityView): Promise<void> {
    await this.env.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PODIDENTITY_PLURAL,
      body: { apiVersion: API_VERSION, kind: 'PodIdentity', metadata: { name }, spec: { identity: { existing: { resourceId: identity.id } }, mode: 'Federated' } },
    });
    await patchStatus(this.env.custom, { group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace, name }, {
      mode: 'Federated',
      clientId: identity.clientId,
      principalId: identity.principalId,
      tenantId: identity.tenantId,
      resourceId: identity.id,
      conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: 'written by the benchmark', lastTransitionTime: new Date().toISOString() }],
    });
  }

  /** A Running pod on `nodeName` with `ip`; no kubelet exists, so the bench writes its status. */
  async pod(namespace: string, name: string, ip: string, labels: Record<string, string>, serviceAccount: string, nodeName = BENCH_NODE): Promise<string> {
    const body: V1Pod = {
      metadata: { name, labels },
      spec: { nodeName, serviceAccountName: serviceAccount, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    };
    const created = await this.env.core.createNamespacedPod({ namespace, body });
    await this.podRunning(namespace, name, ip);
    return created.metadata?.uid ?? '';
  }

  /** What the kubelet would report: Running with its IP. */
  async podRunning(namespace: string, name: string, ip: string): Promise<void> {
    await this.env.core.patchNamespacedPodStatus({ namespace, name, body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } }, mergePatch());
  }

  /** Immediate removal (grace 0): there is no kubelet to confirm a graceful deletion. */
  async deletePod(namespace: string, name: string): Promise<void> {
    await this.env.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 });
  }

  /** Everything for one pod with its own PodIdentity: identity, FIC, PodIdentity (Ready), pod. */
  async boundPod(namespace: string, name: string, ip: string, serviceAccount: string, nodeName = BENCH_NODE): Promise<BoundPod> {
    const identity = this.identity(`${namespace}-${name}`);
    await this.federatedCredential(identity, namespace, serviceAccount);
    await this.readyPodIdentity(namespace, name, identity);
    const uid = await this.pod(namespace, name, ip, { 'podidentity.dev/identity': name }, serviceAccount, nodeName);
    return { namespace, name, uid, serviceAccount, ip, identity, podIdentity: name };
  }

  private async token(): Promise<string> {
    // The credential caches its own token; this only saves the await of a resolved promise per call.
    if (!this.armToken || Date.now() - this.armToken.at > 600_000) this.armToken = { value: await operatorToken(this.env.fx), at: Date.now() };
    return this.armToken.value;
  }
}
