/**
 * The real agent (agent/main.ts) as a child process on loopback: no iptables (`--manage-iptables=false`),
 * listening on 127.0.0.1. Clients become pods by binding the pod's 127.x address as their source address,
 * which the agent attributes exactly as it would a DNATed pod connection.
 */
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICE_ACCOUNT_DIR } from '../../lib/k8s/in-cluster.js';
import { startProcess, type ManagedProcess } from '../support/processes.js';
import type { BenchEnv } from './fixture.js';
import { BENCH_NODE } from './fixture.js';
import { compiled, REPO } from './build.js';
import { AGENT_IMAGE, rssBytes, startNodeScript, waitHttpOk } from './processes.js';

export interface AgentProcess {
  origin: string;
  /** How the agent reached the API server: in-cluster, as in a pod (root only), or through a kubeconfig file. */
  apiConfig: 'in-cluster' | 'kubeconfig';
  metricsOrigin: string;
  logFile: string;
  pid(): number;
  rss(): number;
  /** Stops the agent (SIGTERM) and starts it again with the same flags; resolves when ready. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** `name` names its log file; `extraArgs` come after the bench's own flags (a later flag wins). */
export async function startAgentProcess(env: BenchEnv, ports: { listen: number; metrics: number }, logLevel = 'info', { name = 'agent', extraArgs = [] as string[] } = {}): Promise<AgentProcess> {
  const logFile = join(env.dir, `${name}.log`);
  const args = [
    'run',
    `--node-name=${BENCH_NODE}`,
    '--node-ip=127.0.0.1',
    '--listen-address=127.0.0.1',
    `--listen-port=${ports.listen}`,
    '--metrics-address=127.0.0.1',
    `--metrics-port=${ports.metrics}`,
    `--authority-host=${env.fx.emu.authorityHost}`,
    `--upstream-imds=${env.fx.emu.imdsEndpoint}`,
    '--manage-iptables=false',
    `--log-level=${logLevel}`,
    ...extraArgs,
  ];
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...agentEnv(), NODE_EXTRA_CA_CERTS: env.fx.emu.caCertPath };
  for (const key of Object.keys(childEnv)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete childEnv[key];
  const metricsOrigin = `http://127.0.0.1:${ports.metrics}`;
  const inCluster = process.getuid?.() === 0;
  const launch = inCluster ? inClusterLauncher(env, 'agent', 'agent/main.ts', args, logFile, childEnv) : () => startNodeScript(name, 'agent/main.ts', [...args, `--kubeconfig=${env.cp.kubeconfigPath}`], logFile, childEnv, agentNodeFlags());
  let proc: ManagedProcess;
  const start = async () => {
    proc = launch();
    await waitHttpOk('agent /readyz', `${metricsOrigin}/readyz`, proc, logFile);
  };
  await start();
  return {
    origin: `http://127.0.0.1:${ports.listen}`,
    apiConfig: inCluster ? 'in-cluster' : 'kubeconfig',
    metricsOrigin,
    logFile,
    pid: () => proc.pid,
    rss: () => rssBytes(proc.pid),
    async restart() {
      await proc.stop();
      await start();
    },
    stop: () => proc.stop(),
  };
}

/**
 * The agent as in a pod: in-cluster config (KUBERNETES_SERVICE_HOST/PORT, and the token and CA bind-mounted
 * read-only at the service-account path in a private mount namespace, as e2e/kubelet does), so the bench
 * measures the production path, which loads no client-node. The token is the bench API server's admin token.
 * The exec chain keeps one PID (unshare → sh → node), so RSS and CPU are the agent's.
 */
function inClusterLauncher(env: BenchEnv, name: string, entry: string, args: string[], logFile: string, childEnv: NodeJS.ProcessEnv): () => ManagedProcess {
  const saDir = join(env.dir, 'agent-serviceaccount');
  mkdirSync(saDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(saDir, 'token'), env.cp.token, { mode: 0o600 });
  writeFileSync(join(saDir, 'ca.crt'), env.cp.caPem);
  const server = new URL(env.cp.server);
  const mount = `mkdir -p ${SERVICE_ACCOUNT_DIR} 2>/dev/null; mount --bind "$1" ${SERVICE_ACCOUNT_DIR} && mount -o remount,bind,ro ${SERVICE_ACCOUNT_DIR} && shift && exec "$@"`;
  const argv = ['--mount', '--propagation', 'private', 'sh', '-c', mount, 'bench-mount', saDir, process.execPath, ...agentNodeFlags(), compiled(entry), ...args];
  const podEnv: NodeJS.ProcessEnv = { ...childEnv, KUBERNETES_SERVICE_HOST: server.hostname, KUBERNETES_SERVICE_PORT: server.port, HOME: '' };
  delete podEnv['KUBECONFIG'];
  return () => {
    const fd = openSync(logFile, 'a');
    try {
      return startProcess(name, 'unshare', argv, { cwd: REPO, env: podEnv, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd); // the child has its own copy
    }
  };
}

/**
 * Baseline V of P6 (verify-floor-server.ts): B plus the agent's own attribution, started exactly as the agent
 * is (in-cluster as in a pod when root, with the image's node flags), so it reads the API server as the agent does.
 */
export async function startVerifyFloor(env: BenchEnv, port: number, bodyFile: string): Promise<{ proc: ManagedProcess; origin: string }> {
  const logFile = join(env.dir, 'verify-floor.log');
  const args = [String(port), bodyFile, BENCH_NODE];
  const inCluster = process.getuid?.() === 0;
  // The agent's image env (malloc arenas) too: the same process settings, only the agent's work taken away.
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...agentEnv() };
  const proc = inCluster
    ? inClusterLauncher(env, 'verify-floor', 'dev/bench/verify-floor-server.ts', args, logFile, childEnv)()
    : startNodeScript('verify-floor', 'dev/bench/verify-floor-server.ts', [...args, `--kubeconfig=${env.cp.kubeconfigPath}`], logFile, childEnv, agentNodeFlags());
  const origin = `http://127.0.0.1:${port}`;
  await waitHttpOk('verify-floor server', `${origin}/healthz`, proc, logFile);
  return { proc, origin };
}

/** One value from the agent's /metrics (first series whose name and labels start with `prefix`). */
export async function agentMetric(agent: AgentProcess, prefix: string): Promise<number | undefined> {
  const text = await (await fetch(`${agent.metricsOrigin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.split(' ').pop()) : undefined;
}

/**
 * The image's node flags, plus BENCH_AGENT_NODE_FLAGS for an investigation (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`,
 * or `--max-semi-space-size=2`: V8 takes the last value of a flag given twice).
 */
export function agentNodeFlags(): string[] {
  return [...AGENT_IMAGE.nodeFlags, ...(process.env['BENCH_AGENT_NODE_FLAGS'] ?? '').split(' ').filter(Boolean)];
}

/**
 * The image's ENV, plus BENCH_AGENT_ENV (`NAME=value NAME=value`) for an investigation, e.g.
 * `MALLOC_ARENA_MAX=4` or `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`; `NAME=` unsets NAME.
 */
export function agentEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...AGENT_IMAGE.env };
  for (const pair of (process.env['BENCH_AGENT_ENV'] ?? '').split(' ').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`BENCH_AGENT_ENV: ${pair} is not NAME=value`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1) || undefined;
  }
  return env;
}
