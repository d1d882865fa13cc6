/**
 * The whole product on embedded local defaults: a real control plane, the Azure emulator, the operator, one
 * agent per simulated node and demo pods. `make run` and the full-stack e2e test both start it from here.
 *
 * The operator and the agents are the rendered overlay's Deployment and DaemonSet, run by the kubelet
 * harness (./kubelet): from the compiled dist/ with production modules, with the manifests' command lines,
 * environment and ServiceAccounts, so under the shipped RBAC. Each node is a netns (the agent, hostNetwork,
 * with its real interception rules); each pod, operator replicas and demo pods alike, is a netns named
 * `podid-<namespace>-<pod>` behind its node. Needs root.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoordinationV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from './controlplane/controlplane.js';
import { installCrds } from './controlplane/crds.js';
import { startAzureEmulator, type AzureEmulator } from '../azure-emulator/emulator.js';
import { createTopology, tcpForward, type Topology } from './netns/netns.js';
import { startProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { kustomize, type K8sObject } from './kubelet/render.js';
import { EndpointsController } from './kubelet/endpoints.js';
import { Kubelet, planPods, type KubeletNode, type PlannedPod, type RunningPod } from './kubelet/kubelet.js';
import { dockerfileFor } from './kubelet/image.js';
import { workloadContainers } from './kubelet/manifests.js';
import { stageImage } from './kubelet/program.js';
import { DEMO_PODS, DEMO_SUBSCRIPTION, demoManifests, type DemoPod } from './demo.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface StackOptions {
  /** Real interception in network namespaces (needs root); the shipped workloads need it too. */
  netns: boolean;
  log?: (message: string) => void;
  /** Flags added to the operator container's args (tests use shorter windows). */
  operatorArgs?: string[];
  /** Flags added to the agent container's args. */
  agentArgs?: string[];
  /** The kustomization whose Deployments and DaemonSets run (default config/overlays/dev). */
  overlay?: string;
  /** Changes the rendered objects before they are applied (tests: take a verb out of a ClusterRole). */
  mutate?: (objects: K8sObject[]) => void;
  /** Pod network namespaces are named `<prefix><namespace>-<pod>` (default `podid-`; must start with it). */
  netnsPrefix?: string;
  /** How long the emulator's Azure AD refuses a new federated credential (AADSTS70021); default 0. */
  ficPropagationDelayMs?: number;
  /** How long the operator and agents get to become ready (default 90 s). */
  readyTimeoutMs?: number;
}

export interface NodeHandle {
  name: string;
  /** The agent's address: the node's IP. */
  ip: string;
  /** The agent pod the kubelet harness runs on this node (restarted when it exits). */
  agent: RunningPod;
  metricsUrl: string;
  /** The IMDS URL apps use: 169.254.169.254 inside pod namespaces. */
  imdsBase: string;
  topology: Topology;
}

export interface PodHandle extends DemoPod {
  ip: string;
  node: NodeHandle;
  /** The pod's network namespace. */
  netns: string;
}

export interface Stack {
  cp: ControlPlane;
  emu: AzureEmulator;
  kc: KubeConfig;
  kubeconfigPath: string;
  kubelet: Kubelet;
  /** The rendered overlay, as applied (after `mutate`). */
  objects: K8sObject[];
  /** The operator's pods (the Deployment's replicas), as the kubelet harness runs them. */
  operators: RunningPod[];
  /** The metrics URL of the operator replica that holds the leader Lease (the one that reconciles). */
  operatorMetricsUrl(): Promise<string>;
  nodes: NodeHandle[];
  pods: PodHandle[];
  /** Where pods reach ARM (the emulator), and the CA file apps must trust. */
  armEndpointForPods: string;
  dir: string;
  /** Environment for child processes: trusts the emulator's CA, carries no ambient Azure settings. */
  childEnv(): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

const SCALE_SET = { resourceGroup: 'mc_podid_local', name: 'aks-pool-vmss' };
const NODE_NAMES = ['aks-pool-vmss000000', 'aks-pool-vmss000001'];
/** The `kubernetes` Service's ClusterIP (first address of the control plane's service range) and port. */
const KUBERNETES_SERVICE = { host: '10.96.0.1', port: 443 };
const OPERATOR = 'podidentity-operator';
const AGENT = 'podidentity-agent';
const OPERATOR_SECRET = 'podidentity-operator-azure';

export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? (() => {});
  if (!options.netns) {
    throw new Error('the operator and agents run as a kubelet runs them, in network and mount namespaces: run as root (with iproute2)');
  }
  netnsPrefix = options.netnsPrefix ?? 'podid-';
  const dir = mkdtempSync(join(tmpdir(), 'podid-stack-'));
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const overlay = options.overlay ?? 'config/overlays/dev';
    log(`rendering ${overlay}; staging the images' files (compiled dist/, production node_modules)`);
    const { objects } = await kustomize(forThisControlPlane(overlay, dir));
    appendContainerArgs(objects, OPERATOR, options.operatorArgs ?? []);
    appendContainerArgs(objects, AGENT, options.agentArgs ?? []);
    options.mutate?.(objects);
    const planned = planPods(objects, NODE_NAMES);
    // Compiling and installing (cached across runs) overlaps with starting the control plane.
    const staging = stageImages(objects);
    staging.catch(() => {});

    log('starting the control plane (etcd + kube-apiserver)');
    const cp = await startControlPlane();
    cleanups.push(() => cp.stop());
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    await installCrds(kc);
    log(`applying ${overlay} (namespace, RBAC, ServiceAccounts, Services, workloads)`);
    const webhookConfigurations = objects.filter((o) => o.kind === 'ValidatingWebhookConfiguration');
    await applyRendered(kc, objects.filter((o) => !webhookConfigurations.includes(o)));

    log('creating node and pod network namespaces');
    const topologies: Topology[] = [];
    for (const [i, nodeName] of NODE_NAMES.entries()) {
      const demoPods = DEMO_PODS.filter((p) => p.nodeIndex === i).map((p) => podNetnsName(p.namespace, p.name));
      const workloadPods = planned.filter((p) => p.nodeName === nodeName && !p.hostNetwork).map((p) => podNetnsName(p.namespace, p.name));
      const topology = await createTopology({ podNames: [...demoPods, ...workloadPods], podEgress: true });
      cleanups.push(() => topology.destroy());
      topologies.push(topology);
    }

    log('starting the Azure emulator (ARM, Azure AD, IMDS)');
    const emu = await startAzureEmulator({
      subscriptionId: DEMO_SUBSCRIPTION,
      extraHosts: topologies.map((t) => t.rootIp),
      caDir: join(dir, 'ca'),
      ficPropagationDelayMs: options.ficPropagationDelayMs ?? 0,
    });
    cleanups.push(() => emu.stop());
    const nodeIps = topologies.map((t) => t.nodeIp);
    seedAzure(emu, cp, nodeIps);
    const operatorSecret = randomUUID();
    const operatorSp = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret: operatorSecret, role: 'Owner' });

    const core = kc.makeApiClient(CoreV1Api);
    await createNodes(core, emu, nodeIps);
    // The operator's Azure credential where a cluster without workload identity keeps it: a Secret its
    // Deployment's env refers to (read by the kubelet, not by the operator, whose RBAC has no Secrets).
    await core.createNamespacedSecret({ namespace: 'podidentity-system', body: { metadata: { name: OPERATOR_SECRET }, stringData: { 'client-secret': operatorSecret } } });

    const childEnv = (): NodeJS.ProcessEnv => {
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: emu.caCertPath };
      for (const key of Object.keys(env)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete env[key];
      return env;
    };

    const nodes: KubeletNode[] = [];
    for (const [i, t] of topologies.entries()) {
      await kubeProxy(t, cp, cleanups);
      nodes.push({ name: NODE_NAMES[i]!, hostIP: t.nodeIp, netns: t.nodeNs, apiServer: KUBERNETES_SERVICE });
    }
    const armPort = new URL(emu.armEndpoint).port;
    const imdsPort = new URL(emu.imdsEndpoint).port;
    const rootIpOf = (node: KubeletNode) => topologies[nodes.indexOf(node)]!.rootIp;
    const kubelet = new Kubelet({
      repo: REPO,
      kc,
      caPem: cp.caPem,
      nodes,
      dir,
      log,
      // Cluster-local settings, as an overlay would set them on a real cluster: the emulator stands in for
      // Azure (ARM, Azure AD, the nodes' IMDS) at the node's side of its link, with its own CA.
      env: (pod, node) => {
        const azure = `https://${rootIpOf(node)}:${armPort}`;
        const common = [{ name: 'NODE_EXTRA_CA_CERTS', value: emu.caCertPath }, { name: 'AZURE_AUTHORITY_HOST', value: azure }];
        if (pod.workload.metadata.name === OPERATOR) {
          return [
            ...common,
            { name: 'AZURE_SUBSCRIPTION_ID', value: emu.subscriptionId },
            { name: 'POD_IDENTITY_RESOURCE_GROUP', value: 'podid-demo' },
            { name: 'POD_IDENTITY_LOCATION', value: 'westeurope' },
            { name: 'POD_IDENTITY_DEFAULT_MODE', value: 'Federated' },
            { name: 'POD_IDENTITY_AKS_CLUSTER_ID', value: `/subscriptions/${emu.subscriptionId}/resourceGroups/podid-demo/providers/Microsoft.ContainerService/managedClusters/local` },
            { name: 'AZURE_ARM_ENDPOINT', value: azure },
            { name: 'AZURE_TENANT_ID', value: emu.tenantId },
            { name: 'AZURE_CLIENT_ID', value: operatorSp.clientId },
            { name: 'AZURE_CLIENT_SECRET', valueFrom: { secretKeyRef: { name: OPERATOR_SECRET, key: 'client-secret' } } },
          ];
        }
        if (pod.workload.metadata.name === AGENT) return [...common, { name: 'UPSTREAM_IMDS', value: `http://${rootIpOf(node)}:${imdsPort}` }];
        return common;
      },
    });
    await staging;
    await kubelet.prepare(objects);
    cleanups.push(async () => {
      await kubelet.stop(10_000);
      // Fail closed means the rules outlive the agent; removing them is an explicit uninstall.
      const agentImage = await kubelet.stagedImage('Dockerfile.agent');
      for (const t of topologies) await t.exec(t.nodeNs, process.execPath, [join(agentImage.root, 'dist/agent/main.js'), 'uninstall'], { env: childEnv() });
    });

    const endpoints = new EndpointsController(kc, kubelet, objects, log);
    cleanups.push(() => endpoints.stop());
    const runPod = (plan: PlannedPod) => {
      const topology = topologies[NODE_NAMES.indexOf(plan.nodeName)]!;
      const network = plan.hostNetwork ? undefined : topology.pods.find((p) => p.ns === podNetnsName(plan.namespace, plan.name));
      return kubelet.run(plan, network ? { netns: network.ns, ip: network.ip } : undefined);
    };
    const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
    // The webhook's backends get their tokens before its configuration exists, then the configuration, then
    // everything else: see dev/local-cluster/kubelet/README.md ("Admission webhooks").
    const backends = planned.filter((plan) => servesWebhook(plan, objects, webhookConfigurations));
    log('starting the operator (it serves the agent-token admission webhook), as the kubelet would');
    const webhookPods = await Promise.all(backends.map(runPod));
    if (webhookConfigurations.length > 0) log('applying the admission webhook configuration (config/webhook with components/admission-pre-1.28)');
    await applyRendered(kc, webhookConfigurations);
    await Promise.all(webhookPods.map((pod) => waitPodReady(pod, readyTimeoutMs)));
    await endpoints.sync();
    log('starting one agent per node');
    const otherPods = await Promise.all(planned.filter((plan) => !backends.includes(plan)).map(runPod));
    await Promise.all(otherPods.map((pod) => waitPodReady(pod, readyTimeoutMs)));
    const started = [...webhookPods, ...otherPods];
    const operators = started.filter((p) => p.plan.workload.metadata.name === OPERATOR);
    const nodeHandles: NodeHandle[] = NODE_NAMES.map((name, i) => {
      const agent = started.find((p) => p.plan.workload.metadata.name === AGENT && p.plan.nodeName === name);
      if (!agent) throw new Error(`no agent pod on ${name}`);
      return { name, ip: nodeIps[i]!, agent, metricsUrl: agent.url('metrics', '/metrics'), imdsBase: 'http://169.254.169.254', topology: topologies[i]! };
    });

    log('applying the default policy, config/samples and the demo pods');
    const kubectlApply = startProcess('kubectl', 'kubectl', ['--kubeconfig', cp.kubeconfigPath, 'apply', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    kubectlApply.child.stdin?.end(demoManifests(emu.subscriptionId));
    const applied = await kubectlApply.exited;
    if (applied !== 0) throw new Error(`kubectl apply failed: ${kubectlApply.output()}`);
    const pods = await createDemoPods(core, nodeHandles);

    return {
      cp,
      emu,
      kc,
      kubeconfigPath: cp.kubeconfigPath,
      kubelet,
      objects,
      operators,
      operatorMetricsUrl: () => leaderMetricsUrl(kc, operators),
      nodes: nodeHandles,
      pods,
      armEndpointForPods: `https://${topologies[0]!.rootIp}:${armPort}`,
      dir,
      childEnv,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `podid-<namespace>-<pod>` for `make run` (its printed curl line names it); tests add a run id, so runs never collide. */
let netnsPrefix = 'podid-';
function podNetnsName(namespace: string, name: string): string {
  return `${netnsPrefix}${namespace}-${name}`;
}

async function stageImages(objects: K8sObject[]): Promise<void> {
  const dockerfiles = new Set(workloadContainers(objects).map((c) => dockerfileFor(c.container.image)));
  await Promise.all([...dockerfiles].map((d) => stageImage(REPO, d)));
}

/**
 * The overlay as an SRE would deploy it on this control plane (Kubernetes 1.20): with
 * components/admission-pre-1.28, since API servers before 1.28 have no webhook matchConditions. A
 * kustomization of its own in the run's directory, so the overlay itself stays as users get it.
 */
function forThisControlPlane(overlay: string, dir: string): string {
  const root = join(dir, 'kustomization');
  mkdirSync(root, { recursive: true });
  const from = (path: string) => relative(root, join(REPO, path));
  writeFileSync(
    join(root, 'kustomization.yaml'),
    ['apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization', 'resources:', `  - ${from(overlay)}`, 'components:', `  - ${from('config/components/admission-pre-1.28')}`, ''].join('\n'),
  );
  return root;
}

/** Whether a planned pod is behind a Service that a webhook configuration calls. */
function servesWebhook(plan: PlannedPod, objects: K8sObject[], configurations: K8sObject[]): boolean {
  const services = configurations.flatMap((c) => ((c['webhooks'] ?? []) as { clientConfig?: { service?: { name: string; namespace: string } } }[]).map((w) => w.clientConfig?.service).filter((s) => s !== undefined));
  const labels = plan.workload.spec.template.metadata?.labels ?? {};
  return services.some((ref) => {
    const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === ref.name && o.metadata.namespace === ref.namespace);
    const selector = (service?.['spec']?.selector ?? {}) as Record<string, string>;
    return ref.namespace === plan.namespace && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
  });
}

/**
 * What `kubectl apply` of the rendered overlay creates, minus what this control plane can't take or that
 * the harness installs itself: CRDs (installCrds) and policy/v1 PodDisruptionBudgets (Kubernetes 1.20).
 */
async function applyRendered(kc: KubeConfig, objects: K8sObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const order = ['Namespace', 'PriorityClass', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ConfigMap', 'Service', 'Deployment', 'DaemonSet', 'ValidatingWebhookConfiguration'];
  const skipped = new Set(['CustomResourceDefinition', 'PodDisruptionBudget']);
  const unknown = objects.filter((o) => !order.includes(o.kind) && !skipped.has(o.kind)).map((o) => `${o.kind}/${o.metadata.name}`);
  if (unknown.length > 0) throw new Error(`the stack does not know how to apply ${unknown.join(', ')}`);
  for (const kind of order) {
    await Promise.all(objects.filter((o) => o.kind === kind).map((o) => client.create(o as KubernetesObject)));
  }
}

/**
 * kube-proxy's part for the `kubernetes` Service: in the node's namespace, traffic to the ClusterIP (from
 * its pods and from the node itself) is DNATed to the API server, through a forwarder on the root end of
 * the node's link. The API server's certificate names the ClusterIP, as on a real cluster.
 */
async function kubeProxy(t: Topology, cp: ControlPlane, cleanups: (() => Promise<void>)[]): Promise<void> {
  const server = new URL(cp.server);
  const proxy = await tcpForward(t.rootIp, server.hostname, Number(server.port));
  cleanups.push(() => proxy.close());
  const to = `${t.rootIp}:${proxy.port}`;
  // A node has a default route; without one the node's own connections to the ClusterIP fail before OUTPUT's DNAT.
  const gw = await t.exec(t.nodeNs, 'ip', ['route', 'replace', 'default', 'via', t.rootIp]);
  if (gw.code !== 0) throw new Error(`default route in ${t.nodeNs}: ${gw.stderr}`);
  const { host, port } = KUBERNETES_SERVICE;
  for (const chain of ['PREROUTING', 'OUTPUT']) {
    const res = await t.exec(t.nodeNs, 'iptables-nft', ['-w', '5', '-t', 'nat', '-A', chain, '-d', `${host}/32`, '-p', 'tcp', '--dport', String(port), '-j', 'DNAT', '--to-destination', to]);
    if (res.code !== 0) throw new Error(`kube-proxy rule in ${t.nodeNs}: ${res.stderr}`);
  }
  // The root namespace (the tests, the API server's probes) reaches pod IPs through the node.
  const podNet = t.gatewayIp.replace(/\.\d+$/, '.0/24');
  const route = await new Promise<number>((resolve) => execFile('ip', ['route', 'replace', podNet, 'via', t.nodeIp], (err) => resolve(err ? 1 : 0)));
  if (route !== 0) throw new Error(`ip route replace ${podNet} via ${t.nodeIp} failed`);
}

async function waitPodReady(pod: RunningPod, timeoutMs: number): Promise<void> {
  const what = `${pod.namespace}/${pod.name} ready`;
  await waitFor(
    what,
    () => {
      const containers = [...pod.containers.values()];
      return containers.length > 0 && containers.every((c) => c.ready);
    },
    { timeoutMs, intervalMs: 200 },
  ).catch((err: Error) => {
    const detail = [...pod.containers.values()].map((c) => `--- ${c.container.name} (restarts ${c.restartCount}, exits ${c.exits.join(',') || 'none'}):\n${c.output().slice(-3000)}`).join('\n');
    throw new Error(`${err.message}\n${detail}`);
  });
}

/** The replica whose hostname (its pod name) starts the holder identity of the operator's Lease. */
async function leaderMetricsUrl(kc: KubeConfig, operators: RunningPod[]): Promise<string> {
  if (operators.length === 1) return operators[0]!.url('metrics', '/metrics');
  const leases = kc.makeApiClient(CoordinationV1Api);
  const holder = await waitFor('an operator leader', async () => {
    const lease = await leases.readNamespacedLease({ namespace: 'podidentity-system', name: OPERATOR }).catch(() => undefined);
    return lease?.spec?.holderIdentity || undefined;
  }, { timeoutMs: 60_000 });
  const leader = operators.find((p) => holder.startsWith(`${p.name}_`));
  if (!leader) throw new Error(`the Lease holder ${holder} is none of ${operators.map((p) => p.name).join(', ')}`);
  return leader.url('metrics', '/metrics');
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

async function createDemoPods(core: CoreV1Api, nodes: NodeHandle[]): Promise<PodHandle[]> {
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const pods: PodHandle[] = [];
  for (const demo of DEMO_PODS) {
    const node = nodes[demo.nodeIndex]!;
    const netns = podNetnsName(demo.namespace, demo.name);
    const ip = node.topology.pods.find((p) => p.ns === netns)!.ip;
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
    pods.push({ ...demo, ip, node, netns });
  }
  return pods;
}

/** Extra flags go where a user would put them: the workload's container args in the rendered manifest. */
function appendContainerArgs(objects: K8sObject[], workload: string, extra: string[]): void {
  if (extra.length === 0) return;
  const target = objects.find((o) => (o.kind === 'Deployment' || o.kind === 'DaemonSet') && o.metadata?.name === workload);
  const containers = (target as { spec?: { template?: { spec?: { containers?: { args?: string[] }[] } } } } | undefined)?.spec?.template?.spec?.containers;
  const container = containers?.[0];
  if (!container) throw new Error(`no ${workload} container in the rendered overlay to add ${extra.join(' ')} to`);
  container.args = [...(container.args ?? []), ...extra];
}
