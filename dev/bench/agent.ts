/**
 * The real agent (agent/main.ts) as a child process on loopback: no iptables (`--manage-iptables=false`),
 * listening on 127.0.0.1. Clients become pods by binding the pod's 127.x address as their source address,
 * which the agent attributes exactly as it would a DNATed pod connection.
 */
import { join } from 'node:path';
import type { ManagedProcess } from '../support/processes.js';
import type { BenchEnv } from './fixture.js';
import { BENCH_NODE } from './fixture.js';
import { rssBytes, PRODUCT_NODE_FLAGS, startNodeScript, waitHttpOk } from './processes.js';

export interface AgentProcess {
  origin: string;
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
    `--kubeconfig=${env.cp.kubeconfigPath}`,
    `--authority-host=${env.fx.emu.authorityHost}`,
    `--upstream-imds=${env.fx.emu.imdsEndpoint}`,
    '--manage-iptables=false',
    `--log-level=${logLevel}`,
    ...extraArgs,
  ];
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: env.fx.emu.caCertPath };
  for (const key of Object.keys(childEnv)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete childEnv[key];
  const metricsOrigin = `http://127.0.0.1:${ports.metrics}`;
  let proc: ManagedProcess;
  const start = async () => {
    proc = startNodeScript(name, 'agent/main.ts', args, logFile, childEnv, PRODUCT_NODE_FLAGS);
    await waitHttpOk('agent /readyz', `${metricsOrigin}/readyz`, proc, logFile);
  };
  await start();
  return {
    origin: `http://127.0.0.1:${ports.listen}`,
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

/** One value from the agent's /metrics (first series whose name and labels start with `prefix`). */
export async function agentMetric(agent: AgentProcess, prefix: string): Promise<number | undefined> {
  const text = await (await fetch(`${agent.metricsOrigin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.split(' ').pop()) : undefined;
}
