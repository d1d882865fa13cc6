/**
 * A simulated node for the agent e2e suites that run the agent in network namespaces: the topology (a node
 * netns, pod netns behind it), its Azure side (azure-fixture.ts), the API server reached through a forwarder
 * on the node link, the agent process with its real interception rules, and the objects a test puts on the
 * node (PodIdentities with a Ready status, since no operator runs; Pods with their IP). Needs root.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, VERSION } from '../../lib/api/types.js';
import { patchStatus } from '../../operator/k8s/objects.js';
import type { AzureEmulator, IdentityView } from '../../dev/azure-emulator/emulator.js';
import { kubeconfigYaml } from '../../dev/local-cluster/controlplane/controlplane.js';
import { addPlatformImdsPath, createTopology, tcpForward, type ExecResult, type PodNetns, type Topology } from '../../dev/local-cluster/netns/netns.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { startNodeAzure } from './azure-fixture.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface CurlResult {
  /** 0 when no HTTP answer came back (connection refused or reset). */
  status: number;
  body: Record<string, string>;
  text: string;
}

export interface AgentNodeOptions {
  pods: number;
  /** Prefix of the temporary directory (kubeconfig, agent log). */
  name: string;
  agentPort: number;
  metricsPort: number;
}

export interface AgentNode {
  cluster: TestCluster;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  topo: Topology;
  emu: AzureEmulator;
  /** An ARM call as an Owner service principal; asserts a 2xx answer. */
  arm(method: string, path: string, body: unknown): Promise<void>;
  nodeName: string;
  metricsPort: number;
  /** The running agent, if one was started and not stopped since. */
  readonly agent: ManagedProcess | undefined;
  /** Starts the agent on the node (the run flags every suite needs, then `extraArgs`) and waits for /readyz. */
  startAgent(extraArgs?: string[]): Promise<ManagedProcess>;
  /** Starts the agent again with the arguments it was last started with. */
  restartAgent(): Promise<ManagedProcess>;
  /** The environment of processes on the node: trusts the emulator, no other managed-identity source. */
  childEnv(): NodeJS.ProcessEnv;
  createPodIdentity(namespace: string, name: string, identity: IdentityView, mode: 'Federated' | 'Node'): Promise<void>;
  createPod(namespace: string, name: string, ip: string, labels: Record<string, string>, sa?: string, phase?: string): Promise<void>;
  /** curl from inside a pod netns, exactly as an app calls IMDS; the path is sent as written (`--path-as-is`). */
  curl(pod: PodNetns, path: string, options?: { method?: string; headers?: Record<string, string> }): Promise<CurlResult>;
  /** `agent uninstall` on the node. */
  uninstall(): Promise<ExecResult>;
  /** Stops the agent, removes its rules, and everything else the fixture started. */
  stop(): Promise<void>;
}

export async function startAgentNode({ pods, name, agentPort, metricsPort }: AgentNodeOptions): Promise<AgentNode> {
  const cluster = await testCluster();
  const core = cluster.kc.makeApiClient(CoreV1Api);
  const custom = cluster.kc.makeApiClient(CustomObjectsApi);
  const topo = await createTopology({ pods });
  const dir = mkdtempSync(join(tmpdir(), `podid-${name}-e2e-`));
  const nodeName = `node-${topo.id}`;
  let emu: AzureEmulator | undefined;

  let runner: NodeAgentRunner | undefined;
  const childEnv = (): NodeJS.ProcessEnv => appEnv(emu!);
  const uninstall = () => runner!.uninstall();
  const stop = async () => {
    await runner?.close();
    await emu?.stop();
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const azure = await startNodeAzure(cluster, topo, nodeName);
    emu = azure.emu;
    runner = await nodeAgentRunner({ topo, cluster, emu, nodeName, agentPort, metricsPort, dir });
    const launch = runner.launch;
    return {
      cluster,
      core,
      custom,
      topo,
      emu,
      arm: azure.arm,
      nodeName,
      metricsPort,
      get agent() {
        return runner!.agent;
      },
      startAgent: (extraArgs = []) => launch([...runner!.runArgs, ...extraArgs]),
      restartAgent: () => launch(runner!.lastArgs),
      childEnv,
      async createPodIdentity(namespace, name, identity, mode) {
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PODIDENTITY_PLURAL,
          body: { apiVersion: API_VERSION, kind: 'PodIdentity', metadata: { name }, spec: { identity: { existing: { resourceId: identity.id } }, mode } },
        });
        await patchStatus(custom, { group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace, name }, {
          mode,
          clientId: identity.clientId,
          principalId: identity.principalId,
          tenantId: identity.tenantId,
          resourceId: identity.id,
          conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: 'test', lastTransitionTime: new Date().toISOString() }],
        });
      },
      async createPod(namespace, name, ip, labels, sa = 'default', phase = 'Running') {
        const body: V1Pod = {
          metadata: { name, labels },
          spec: { nodeName, serviceAccountName: sa, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
        };
        await core.createNamespacedPod({ namespace, body });
        await core.patchNamespacedPodStatus({ namespace, name, body: { status: { phase, podIP: ip, podIPs: [{ ip }] } } }, mergePatch());
      },
      async curl(pod, path, { method = 'GET', headers = { Metadata: 'true' } } = {}) {
        const args = ['-s', '--path-as-is', '-m', '10', '-X', method, '-w', '\n%{http_code}'];
        for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
        args.push(`http://169.254.169.254${path}`);
        const res = await topo.exec(pod.ns, 'curl', args);
        const lines = res.stdout.split('\n');
        const status = Number(lines.pop() ?? '0');
        const text = lines.join('\n');
        let body: Record<string, string> = {};
        try {
          body = JSON.parse(text) as Record<string, string>;
        } catch {
          /* not JSON, or no body: refused */
        }
        return { status, body, text };
      },
      uninstall,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The environment of an app or agent on the node: trusts the emulator, no other managed-identity source. */
export function appEnv(emu: AzureEmulator): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: emu.caCertPath };
  // Apps in pods must not be steered to other managed-identity sources or endpoints.
  for (const key of Object.keys(env)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete env[key];
  return env;
}

export interface NodeAgentSetup {
  topo: Topology;
  cluster: { server: string; caPem: string; token: string };
  emu: AzureEmulator;
  nodeName: string;
  agentPort: number;
  metricsPort: number;
  /** Holds the agent's kubeconfig and log. */
  dir: string;
}

export interface NodeAgentRunner {
  /** The run flags every suite needs. */
  runArgs: string[];
  lastArgs: string[];
  readonly agent: ManagedProcess | undefined;
  /** Starts the agent with these node arguments and waits for /readyz. */
  launch(args: string[]): Promise<ManagedProcess>;
  /** `agent uninstall` on the node. */
  uninstall(): Promise<ExecResult>;
  /** Stops the agent, removes its rules and closes the API forwarder. */
  close(): Promise<void>;
}

/**
 * The agent on a simulated node, as a DaemonSet pod would run it: it reaches the API server through a
 * forwarder on the root end of the node's link, and the platform IMDS path exists (without the agent's rules,
 * pod traffic to IMDS reaches the real IMDS as the node).
 */
export async function nodeAgentRunner({ topo, cluster, emu, nodeName, agentPort, metricsPort, dir }: NodeAgentSetup): Promise<NodeAgentRunner> {
  const server = new URL(cluster.server);
  const apiProxy = await tcpForward(topo.rootIp, server.hostname, Number(server.port));
  const kubeconfig = join(dir, 'kubeconfig');
  // The API server's self-signed certificate names "kubernetes", not the forwarder's address.
  writeFileSync(
    kubeconfig,
    kubeconfigYaml({ server: `https://${topo.rootIp}:${apiProxy.port}`, caPem: cluster.caPem, token: cluster.token, tlsServerName: 'kubernetes' }),
    { mode: 0o600 },
  );
  const imdsPort = Number(new URL(emu.imdsEndpoint).port);
  await addPlatformImdsPath(topo, topo.rootIp, imdsPort);
  const runArgs = [
    '--import',
    'tsx',
    join(REPO, 'agent/main.ts'),
    'run',
    `--node-name=${nodeName}`,
    `--node-ip=${topo.nodeIp}`,
    `--listen-port=${agentPort}`,
    `--metrics-address=${topo.nodeIp}`,
    `--metrics-port=${metricsPort}`,
    `--kubeconfig=${kubeconfig}`,
    `--authority-host=https://${topo.rootIp}:${new URL(emu.armEndpoint).port}`,
    `--upstream-imds=http://${topo.rootIp}:${imdsPort}`,
    '--iptables-mode=nft',
  ];
  let agent: ManagedProcess | undefined;
  const runner: NodeAgentRunner = {
    runArgs,
    lastArgs: [],
    get agent() {
      return agent;
    },
    async launch(args) {
      runner.lastArgs = args;
      const proc = topo.spawn('agent', topo.nodeNs, process.execPath, args, { env: appEnv(emu), cwd: REPO, logFile: process.env['PODID_AGENT_E2E_LOG'] ?? join(dir, 'agent.log') });
      agent = proc;
      await waitFor(
        'agent /readyz',
        async () => {
          if (proc.child.exitCode !== null) throw new Error(`agent exited:\n${proc.output().slice(-3000)}`);
          const res = await fetch(`http://${topo.nodeIp}:${metricsPort}/readyz`).catch(() => undefined);
          return res?.status === 200;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${proc.output().slice(-3000)}`);
      });
      return proc;
    },
    uninstall: () => topo.exec(topo.nodeNs, process.execPath, ['--import', 'tsx', join(REPO, 'agent/main.ts'), 'uninstall', '--iptables-mode=nft'], { env: appEnv(emu) }),
    async close() {
      await agent?.stop();
      await runner.uninstall();
      await apiProxy.close();
    },
  };
  return runner;
}
