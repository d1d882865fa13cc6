/** The real operator (operator/main.ts, compiled) as a child process against the bench's API server and emulator. */
import { join } from 'node:path';
import { API_VERSION, GROUP, POLICY_PLURAL, VERSION } from '../../lib/api/types.js';
import type { ManagedProcess } from '../support/processes.js';
import { freePort } from '../support/ports.js';
import type { BenchEnv } from './fixture.js';
import { OPERATOR_IMAGE, rssBytes, startNodeScript, waitHttpOk } from './processes.js';

export const OPERATOR_RG = 'bench-operator-rg';
export const OPERATOR_NAMESPACE = 'podidentity-system';

export interface OperatorProcess {
  metricsOrigin: string;
  logFile: string;
  pid(): number;
  rss(): number;
  /** SIGKILL, then start again with the same flags; resolves when ready. */
  killAndRestart(): Promise<void>;
  stop(): Promise<void>;
}

const ignoreExists = (err: { code?: number }) => {
  if (err.code !== 409) throw err;
};

/**
 * Creates what the operator expects to exist: its namespace, its resource group, and a PodIdentityPolicy that
 * lets the bench's namespaces (label podidentity.dev/bench=true) grant Reader on that resource group.
 */
export async function prepareOperatorWorld(env: BenchEnv): Promise<void> {
  env.fx.emu.seed.resourceGroup(OPERATOR_RG);
  await env.core.createNamespace({ body: { metadata: { name: OPERATOR_NAMESPACE } } }).catch(ignoreExists);
  await env.custom
    .createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: POLICY_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: 'PodIdentityPolicy',
        metadata: { name: 'bench' },
        spec: {
          namespaceSelector: { matchLabels: { 'podidentity.dev/bench': 'true' } },
          allowedRoles: ['Reader'],
          allowedScopes: [`/subscriptions/${env.fx.emu.subscriptionId}/resourceGroups/${OPERATOR_RG}`],
          allowedModes: ['Federated', 'Node'],
        },
      },
    })
    .catch(ignoreExists);
}

export async function startOperatorProcess(env: BenchEnv, name: string, extraArgs: string[] = []): Promise<OperatorProcess> {
  await prepareOperatorWorld(env);
  const logFile = join(env.dir, `${name}.log`);
  const metricsPort = await freePort();
  const { emu, operator } = env.fx;
  const args = [
    `--subscription-id=${emu.subscriptionId}`,
    `--resource-group=${OPERATOR_RG}`,
    '--location=eastus',
    `--oidc-issuer=${env.cp.issuer}`,
    `--metrics-port=${metricsPort}`,
    `--kubeconfig=${env.cp.kubeconfigPath}`,
    `--arm-endpoint=${emu.armEndpoint}`,
    `--authority-host=${emu.authorityHost}`,
    `--tenant-id=${emu.tenantId}`,
    `--client-id=${operator.clientId}`,
    `--leader-election-namespace=${OPERATOR_NAMESPACE}`,
    ...extraArgs,
  ];
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...OPERATOR_IMAGE.env, NODE_EXTRA_CA_CERTS: emu.caCertPath, AZURE_CLIENT_SECRET: operator.clientSecret };
  const metricsOrigin = `http://127.0.0.1:${metricsPort}`;
  let proc: ManagedProcess;
  const start = async () => {
    // BENCH_OPERATOR_NODE_FLAGS adds node flags for an investigation, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
    const extraFlags = (process.env['BENCH_OPERATOR_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);
    proc = startNodeScript(name, 'operator/main.ts', args, logFile, childEnv, [...OPERATOR_IMAGE.nodeFlags, ...extraFlags]);
    await waitHttpOk('operator /readyz', `${metricsOrigin}/readyz`, proc, logFile, 90_000);
  };
  await start();
  return {
    metricsOrigin,
    logFile,
    pid: () => proc.pid,
    rss: () => rssBytes(proc.pid),
    async killAndRestart() {
      proc.kill('SIGKILL');
      await proc.exited;
      await start();
    },
    stop: () => proc.stop(),
  };
}
