/**
 * The whole product on embedded local defaults: a real control plane, the Azure emulator, the operator, one
 * agent per simulated node and demo pods. `make run` and the full-stack e2e test both start it from here.
 *
 * With network namespaces (root): each node is a netns with the agent and its real interception rules, and
 * each demo pod is a netns named `podid-<namespace>-<pod>` whose traffic to 169.254.169.254 the agent
 * intercepts. Without them: agents listen on loopback addresses and pods are loopback source addresses.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { kubeconfigYaml, startControlPlane, type ControlPlane } from '../controlplane/controlplane.js';
import { installCrds } from '../controlplane/crds.js';
import { startAzureEmulator, type AzureEmulator } from '../azure/emulator.js';
import { createTopology, tcpForward, type Topology } from '../netns/netns.js';
import { startProcess, type ManagedProcess } from '../testing/processes.js';
import { freePort } from '../testing/ports.js';
import { waitFor } from '../testing/wait.js';
import { DEMO_PODS, DEMO_SUBSCRIPTION, demoManifests, type DemoPod } from './demo.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface StackOptions {
  /** Real interception in network namespaces (needs root). */
  netns: boolean;
  log?: (message: string) => void;
  /** Operator flags added to the defaults (tests use shorter windows). */
  operatorArgs?: string[];
  /** Agent flags added to the defaults. */
  agentArgs?: string[];
}

export interface NodeHandle {
  name: string;
  /** The agent's address: the node's IP (netns) or a loopback address. */
  ip: string;
  agent: ManagedProcess;
  metricsUrl: string;
  /** The IMDS URL apps use: 169.254.169.254 inside pod namespaces, the agent's address on loopback. */
  imdsBase: string;
  topology?: Topology;
}

export interface PodHandle extends DemoPod {
  ip: string;
  node: NodeHandle;
  /** The pod's network namespace, when running with namespaces. */
  netns?: string;
}

export interface Stack {
  cp: ControlPlane;
  emu: AzureEmulator;
  kc: KubeConfig;
  kubeconfigPath: string;
  operator: ManagedProcess;
  operatorMetricsUrl: string;
  nodes: NodeHandle[];
  pods: PodHandle[];
  /** Where pods reach ARM (the emulator), and the CA file apps must trust. */
  armEndpointForPods: string;
  dir: string;
  /** Environment for child processes: trusts the emulator's CA, carries no ambient Azure settings. */
  childEnv(): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

const AGENT_PORT = 8775;
const AGENT_METRICS_PORT = 8776;
const SCALE_SET = { resourceGroup: 'mc_podid_local', name: 'aks-pool-vmss' };
const NODE_NAMES = ['aks-pool-vmss000000', 'aks-pool-vmss000001'];

export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'podid-stack-'));
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    log('starting the control plane (etcd + kube-apiserver)');
    const cp = await startControlPlane();
    cleanups.push(() => cp.stop());
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    await installCrds(kc);

    const topologies: Topology[] = [];
    if (options.netns) {
      log('creating node and pod network namespaces');
      for (const [i] of NODE_NAMES.entries()) {
        const podsHere = DEMO_PODS.filter((p) => p.nodeIndex === i).map((p) => `podid-${p.namespace}-${p.name}`);
        const topology = await createTopology({ podNames: podsHere, podEgress: true });
        cleanups.push(() => topology.destroy());
        topologies.push(topology);
      }
    }

    log('starting the Azure emulator (ARM, Azure AD, IMDS)');
    const emu = await startAzureEmulator({
      subscriptionId: DEMO_SUBSCRIPTION,
      extraHosts: topologies.map((t) => t.rootIp),
      caDir: join(dir, 'ca'),
    });
    cleanups.push(() => emu.stop());
    const nodeIps = options.netns ? topologies.map((t) => t.nodeIp) : NODE_NAMES.map((_, i) => `127.0.1.${i + 1}`);
    seedAzure(emu, cp, nodeIps);
    const operatorSecret = randomUUID();
    const operatorSp = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: operatorSecret, role: 'Owner' });

    const core = kc.makeApiClient(CoreV1Api);
    await createNodes(core, emu, nodeIps);
    await core.createNamespace({ body: { metadata: { name: 'podidentity-system' } } });

    const childEnv = (): NodeJS.ProcessEnv => {
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: emu.caCertPath };
      for (const key of Object.keys(env)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete env[key];
      return env;
    };

    log('starting the operator');
    const operatorMetricsPort = await freePort();
    const operator = startProcess(
      'operator',
      process.execPath,
      [
        '--import', 'tsx', join(REPO, 'operator/main.ts'),
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--subscription-id=${emu.subscriptionId}`,
        '--resource-group=podid-demo',
        '--location=westeurope',
        '--default-mode=Federated',
        `--aks-cluster-id=/subscriptions/${emu.subscriptionId}/resourceGroups/podid-demo/providers/Microsoft.ContainerService/managedClusters/local`,
        `--arm-endpoint=${emu.armEndpoint}`,
        `--authority-host=${emu.authorityHost}`,
        `--tenant-id=${emu.tenantId}`,
        `--client-id=${operatorSp.clientId}`,
        `--metrics-port=${operatorMetricsPort}`,
        '--leader-elect',
        ...(options.operatorArgs ?? []),
      ],
      { env: { ...childEnv(), AZURE_CLIENT_SECRET: operatorSecret }, cwd: REPO, logFile: join(dir, 'operator.log') },
    );
    cleanups.push(() => operator.stop());
    const operatorMetricsUrl = `http://127.0.0.1:${operatorMetricsPort}/metrics`;

    log('starting one agent per node');
    const nodes: NodeHandle[] = [];
    for (const [i, name] of NODE_NAMES.entries()) {
      const node = await startAgent({ cp, emu, name, ip: nodeIps[i]!, topology: topologies[i], dir, childEnv, extraArgs: options.agentArgs ?? [] });
      cleanups.push(async () => {
        await node.agent.stop();
        // Fail closed means the rules outlive the agent; removing them is an explicit uninstall.
        if (node.topology) await node.topology.exec(node.topology.nodeNs, process.execPath, ['--import', 'tsx', join(REPO, 'agent/main.ts'), 'uninstall'], { env: childEnv() });
      });
      nodes.push(node);
    }
    await Promise.all([
      waitReady('operator', operator, `http://127.0.0.1:${operatorMetricsPort}/readyz`),
      ...nodes.map((n) => waitReady(`agent ${n.name}`, n.agent, n.metricsUrl.replace(/metrics$/, 'readyz'))),
    ]);

    log('applying the default policy, config/samples and the demo pods');
    const kubectlApply = startProcess('kubectl', 'kubectl', ['--kubeconfig', cp.kubeconfigPath, 'apply', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    kubectlApply.child.stdin?.end(demoManifests(emu.subscriptionId));
    const applied = await kubectlApply.exited;
    if (applied !== 0) throw new Error(`kubectl apply failed: ${kubectlApply.output()}`);
    const pods = await createDemoPods(core, nodes);

    const armPort = new URL(emu.armEndpoint).port;
    return {
      cp,
      emu,
      kc,
      kubeconfigPath: cp.kubeconfigPath,
      operator,
      operatorMetricsUrl,
      nodes,
      pods,
      armEndpointForPods: options.netns ? `https://${topologies[0]!.rootIp}:${armPort}` : emu.armEndpoint,
      dir,
      childEnv,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function seedAzure(emu: AzureEmulator, cp: ControlPlane, nodeIps: string[]): void {
  for (const rg of ['podid-demo', 'demo-data', 'demo-identities', SCALE_SET.resourceGroup]) emu.seed.resourceGroup(rg, 'westeurope');
  emu.seed.managedCluster({ resourceGroup: 'podid-demo', name: 'local', nodeResourceGroup: SCALE_SET.resourceGroup, oidcIssuerUrl: cp.issuer, workloadIdentity: true });
  emu.seed.trustIssuer({ issuer: cp.issuer, fetchOptions: { ca: cp.caPem } });
  emu.seed.scaleSet({ ...SCALE_SET, instances: NODE_NAMES.map((nodeName, i) => ({ nodeName, ip: nodeIps[i]!, instanceId: String(i) })) });
  // The identity the migrated aad-pod-identity sample adopts.
  emu.seed.identity({ resourceGroup: 'demo-identities', name: 'legacy-app' });
}

async function createNodes(core: CoreV1Api, emu: AzureEmulator, nodeIps: string[]): Promise<void> {
  for (const [i, name] of NODE_NAMES.entries()) {
    const providerID = `azure:///subscriptions/${emu.subscriptionId}/resourceGroups/${SCALE_SET.resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${SCALE_SET.name}/virtualMachines/${i}`;
    await core.createNode({ body: { metadata: { name, labels: { 'kubernetes.azure.com/agentpool': 'pool' } }, spec: { providerID } } });
    await core.patchNodeStatus(
      { name, body: { status: { addresses: [{ type: 'InternalIP', address: nodeIps[i]! }], conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'simulated' }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

interface AgentStart {
  cp: ControlPlane;
  emu: AzureEmulator;
  name: string;
  ip: string;
  topology: Topology | undefined;
  dir: string;
  childEnv: () => NodeJS.ProcessEnv;
  extraArgs: string[];
}

async function startAgent({ cp, emu, name, ip, topology, dir, childEnv, extraArgs }: AgentStart): Promise<NodeHandle> {
  const armPort = new URL(emu.armEndpoint).port;
  const imdsPort = new URL(emu.imdsEndpoint).port;
  const common = [`--node-name=${name}`, `--node-ip=${ip}`, `--listen-port=${AGENT_PORT}`, `--metrics-address=${ip}`, `--metrics-port=${AGENT_METRICS_PORT}`, ...extraArgs];
  const logFile = join(dir, `agent-${name}.log`);
  if (!topology) {
    const agent = startProcess(
      `agent ${name}`,
      process.execPath,
      ['--import', 'tsx', join(REPO, 'agent/main.ts'), 'run', ...common, `--kubeconfig=${cp.kubeconfigPath}`, `--authority-host=${emu.authorityHost}`, `--upstream-imds=${emu.imdsEndpoint}`, '--manage-iptables=false'],
      { env: childEnv(), cwd: REPO, logFile },
    );
    return { name, ip, agent, metricsUrl: `http://${ip}:${AGENT_METRICS_PORT}/metrics`, imdsBase: `http://${ip}:${AGENT_PORT}` };
  }
  // The node reaches the API server through a forwarder on the root end of its link.
  const server = new URL(cp.server);
  const proxy = await tcpForward(topology.rootIp, server.hostname, Number(server.port));
  const kubeconfig = join(dir, `kubeconfig-${name}`);
  writeFileSync(
    kubeconfig,
    kubeconfigYaml({ server: `https://${topology.rootIp}:${proxy.port}`, caPem: cp.caPem, token: cp.token, tlsServerName: 'kubernetes' }),
    { mode: 0o600 },
  );
  const agent = topology.spawn(
    `agent ${name}`,
    topology.nodeNs,
    process.execPath,
    [
      '--import', 'tsx', join(REPO, 'agent/main.ts'), 'run', ...common,
      `--kubeconfig=${kubeconfig}`,
      `--authority-host=https://${topology.rootIp}:${armPort}`,
      `--upstream-imds=http://${topology.rootIp}:${imdsPort}`,
    ],
    { env: childEnv(), cwd: REPO, logFile },
  );
  const stopAgent = agent.stop.bind(agent);
  // The forwarder lives as long as the agent that uses it.
  const wrapped: ManagedProcess = Object.assign(Object.create(Object.getPrototypeOf(agent) as object) as ManagedProcess, agent, {
    stop: async (graceMs?: number) => {
      await stopAgent(graceMs);
      await proxy.close();
    },
  });
  return { name, ip, agent: wrapped, metricsUrl: `http://${ip}:${AGENT_METRICS_PORT}/metrics`, imdsBase: 'http://169.254.169.254', topology };
}

async function waitReady(what: string, proc: ManagedProcess, url: string): Promise<void> {
  await waitFor(
    `${what} ready`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`${what} exited (${proc.child.exitCode}):\n${proc.output().slice(-3000)}`);
      const res = await fetch(url).catch(() => undefined);
      return res?.status === 200;
    },
    { timeoutMs: 90_000, intervalMs: 200 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${proc.output().slice(-3000)}`);
  });
}

async function createDemoPods(core: CoreV1Api, nodes: NodeHandle[]): Promise<PodHandle[]> {
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const pods: PodHandle[] = [];
  let loopbackIp = 10;
  for (const demo of DEMO_PODS) {
    const node = nodes[demo.nodeIndex]!;
    const netns = node.topology ? `podid-${demo.namespace}-${demo.name}` : undefined;
    const ip = node.topology ? node.topology.pods.find((p) => p.ns === netns)!.ip : `127.0.2.${loopbackIp++}`;
    await core.createNamespacedServiceAccount({ namespace: demo.namespace, body: { metadata: { name: demo.serviceAccount } } }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
    await core.createNamespacedPod({
      namespace: demo.namespace,
      body: {
        metadata: { name: demo.name, labels: demo.labels },
        spec: { nodeName: node.name, serviceAccountName: demo.serviceAccount, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/demo:1' }] },
      },
    });
    await core.patchNamespacedPodStatus({ namespace: demo.namespace, name: demo.name, body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } }, merge);
    pods.push({ ...demo, ip, node, ...(netns ? { netns } : {}) });
  }
  return pods;
}
