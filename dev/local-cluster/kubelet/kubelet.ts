/**
 * Runs the rendered Deployments and DaemonSets as a kubelet would, on simulated nodes of the local control
 * plane, so that what a user installs is what the tests start:
 * - a Pod object per replica (Deployment) or per node (DaemonSet), with its nodeName, status and IPs;
 * - each container's effective command (manifest command/args over the Dockerfile's ENTRYPOINT/CMD), from
 *   the compiled dist/ and production node_modules staged as the image's WORKDIR (never tsx);
 * - its environment: image ENV, manifest env with `$(VAR)` expansion, the downward API, Secret and ConfigMap
 *   references, KUBERNETES_SERVICE_HOST/PORT;
 * - its ServiceAccount's own token (TokenRequest bound to the Pod, refreshed at 80% of its life) with the CA
 *   and namespace, bind-mounted at /var/run/secrets/kubernetes.io/serviceaccount in a private mount
 *   namespace, where client-node's in-cluster config reads it: the programs need no test-only switch;
 * - restartPolicy Always with kubelet's back-off (10 s doubling to 5 min, reset after 10 min running), and
 *   readiness and liveness probes (httpGet) reported in the Pod's status.
 * Cluster-local overrides (the emulator's endpoints, CA, credentials) are appended to a container's env as
 * an overlay would; nothing else differs from the manifests.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { K8sObject } from './render.js';
import { startProcess, type ManagedProcess } from '../../support/processes.js';
import { composeCommand, expandReferences, resolveEntrypointScript, toHost } from './command.js';
import { dockerfileFor } from './image.js';
import type { Container, EnvVar, HttpProbe, Workload } from './manifests.js';
import { workloads } from './manifests.js';
import { stageImage, type StagedImage } from './program.js';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeletNode {
  name: string;
  hostIP: string;
  /** The node's network namespace, where hostNetwork pods run; absent: this machine's own. */
  netns?: string;
  /** The API server as this node's pods reach it: KUBERNETES_SERVICE_HOST and _PORT. */
  apiServer: { host: string; port: number };
}

/** A pod network the caller set up (a network namespace with a routable IP) for a pod that is not hostNetwork. */
export interface PodNetwork {
  netns: string;
  ip: string;
}

export interface PlannedPod {
  workload: Workload;
  namespace: string;
  name: string;
  nodeName: string;
  hostNetwork: boolean;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  /** A container that ran this long without exiting starts again from initialMs. */
  resetAfterMs: number;
}

/** kubelet's: 10 s, doubling, capped at 5 min, forgotten after 10 min of running. */
export const KUBELET_BACKOFF: Backoff = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };

export function restartDelay(backoff: Backoff, consecutiveFailures: number): number {
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, consecutiveFailures - 1));
}

/**
 * Which pods the workloads make and where they run: a Deployment's replicas spread over the nodes in turn
 * (its anti-affinity asks for that), a DaemonSet's one per node. Names as the controllers make them.
 */
export function planPods(objects: K8sObject[], nodeNames: string[]): PlannedPod[] {
  const suffix = () => randomBytes(3).toString('hex').slice(0, 5);
  return workloads(objects).flatMap((workload) => {
    const namespace = workload.metadata.namespace ?? 'default';
    const hostNetwork = workload.spec.template.spec.hostNetwork === true;
    if (workload.kind === 'DaemonSet') return nodeNames.map((nodeName) => ({ workload, namespace, name: `${workload.metadata.name}-${suffix()}`, nodeName, hostNetwork }));
    const hash = randomBytes(5).toString('hex').slice(0, 10);
    return Array.from({ length: workload.spec.replicas ?? 1 }, (_, i) => ({ workload, namespace, name: `${workload.metadata.name}-${hash}-${suffix()}`, nodeName: nodeNames[i % nodeNames.length]!, hostNetwork }));
  });
}

export interface KubeletOptions {
  repo: string;
  /** The kubelet's own client (it creates Pods, mints tokens, reads Secrets and ConfigMaps for env). */
  kc: KubeConfig;
  caPem: string;
  nodes: KubeletNode[];
  /** Per-run state: token directories and container logs. */
  dir: string;
  /** Cluster-local env, appended to every container of a pod's workload (as an overlay patch would), per node. */
  env?: (pod: PlannedPod, node: KubeletNode) => EnvVar[];
  backoff?: Backoff;
  log?: (message: string) => void;
}

export class ContainerRunner {
  process: ManagedProcess | undefined;
  restartCount = 0;
  ready = false;
  /** Exit codes of earlier runs, newest last. */
  readonly exits: (number | string)[] = [];
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private consecutiveFailures = 0;

  constructor(
    readonly pod: RunningPod,
    readonly container: Container,
    private readonly launch: () => ManagedProcess,
    private readonly backoff: Backoff,
    private readonly onStatus: () => void,
  ) {}

  /** Starts the container and keeps it running (restartPolicy Always). */
  start(): void {
    if (this.stopping) return;
    const started = Date.now();
    const proc = this.launch();
    this.process = proc;
    void proc.exited.then((code) => {
      if (this.stopping) return;
      this.exits.push(code);
      this.ready = false;
      this.consecutiveFailures = Date.now() - started >= this.backoff.resetAfterMs ? 1 : this.consecutiveFailures + 1;
      this.restartCount++;
      this.onStatus();
      this.timer = setTimeout(() => this.start(), restartDelay(this.backoff, this.consecutiveFailures));
    });
  }

  /** Runs to completion (an init container): retried with the back-off until it exits 0. */
  async runToCompletion(): Promise<void> {
    for (;;) {
      if (this.stopping) return;
      const proc = this.launch();
      this.process = proc;
      const code = await proc.exited;
      if (code === 0 || this.stopping) return;
      this.exits.push(code);
      this.restartCount++;
      this.consecutiveFailures++;
      await new Promise((resolve) => (this.timer = setTimeout(resolve, restartDelay(this.backoff, this.consecutiveFailures))));
    }
  }

  /** Output of the current run (each run has its own buffer; the log file keeps them all). */
  output(): string {
    return this.process?.output() ?? '';
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.process?.stop(graceMs);
  }
}

export class RunningPod {
  uid = '';
  ip = '';
  readonly containers = new Map<string, ContainerRunner>();
  readonly stops: (() => void)[] = [];

  constructor(
    readonly plan: PlannedPod,
    readonly node: KubeletNode,
    readonly network: PodNetwork | undefined,
  ) {}

  get name(): string {
    return this.plan.name;
  }

  get namespace(): string {
    return this.plan.namespace;
  }

  container(name?: string): ContainerRunner {
    const c = name ? this.containers.get(name) : [...this.containers.values()][0];
    if (!c) throw new Error(`${this.namespace}/${this.name}: no container ${name ?? ''}`);
    return c;
  }

  /** http://<pod IP>:<port> of a named (or numbered) container port. */
  url(port: string | number, path = '/'): string {
    const spec = this.plan.workload.spec.template.spec.containers;
    const number = typeof port === 'number' ? port : spec.flatMap((c) => c.ports ?? []).find((p) => p.name === port)?.containerPort;
    if (number === undefined) throw new Error(`${this.namespace}/${this.name}: no port ${port}`);
    return `http://${this.ip}:${number}${path}`;
  }
}

export class Kubelet {
  readonly pods: RunningPod[] = [];
  private readonly core: CoreV1Api;
  private readonly images = new Map<string, Promise<StagedImage>>();
  private readonly backoff: Backoff;
  private readonly podListeners = new Set<() => void>();

  constructor(private readonly options: KubeletOptions) {
    this.core = options.kc.makeApiClient(CoreV1Api);
    this.backoff = options.backoff ?? KUBELET_BACKOFF;
  }

  /** Calls `listener` whenever a pod starts, changes readiness or stops (the endpoints controller follows this). */
  onPodsChanged(listener: () => void): () => void {
    this.podListeners.add(listener);
    return () => this.podListeners.delete(listener);
  }

  private podsChanged(): void {
    for (const listener of this.podListeners) listener();
  }

  /** Stages every image the workloads use (compile, production modules) ahead of starting pods. */
  async prepare(objects: K8sObject[]): Promise<void> {
    const images = new Set(workloads(objects).flatMap((w) => [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers].map((c) => c.image)));
    await Promise.all([...images].map((image) => this.image(image)));
  }

  /** The staged files of the image a Dockerfile builds. */
  stagedImage(dockerfile: string): Promise<StagedImage> {
    return this.image(`podidentity-${dockerfile.replace(/^Dockerfile\./, '')}`);
  }

  private image(image: string): Promise<StagedImage> {
    const dockerfile = dockerfileFor(image);
    let staged = this.images.get(dockerfile);
    if (!staged) {
      staged = stageImage(this.options.repo, dockerfile);
      this.images.set(dockerfile, staged);
    }
    return staged;
  }

  /** Creates the Pod, mints its token, runs its init containers to completion, then starts its containers. */
  async run(plan: PlannedPod, network?: PodNetwork): Promise<RunningPod> {
    const node = this.options.nodes.find((n) => n.name === plan.nodeName);
    if (!node) throw new Error(`pod ${plan.name}: no node ${plan.nodeName}`);
    if (!plan.hostNetwork && !network) throw new Error(`pod ${plan.namespace}/${plan.name} is not hostNetwork and has no pod network`);
    const pod = new RunningPod(plan, node, network);
    this.pods.push(pod);
    const template = plan.workload.spec.template;
    const created = await this.core.createNamespacedPod({
      namespace: plan.namespace,
      body: {
        metadata: { name: plan.name, labels: template.metadata?.labels ?? {}, annotations: template.metadata?.annotations ?? {} },
        // The token is mounted by this kubelet (below), not through a legacy token Secret that no controller creates.
        spec: { ...(template.spec as V1Pod['spec']), nodeName: plan.nodeName, automountServiceAccountToken: false } as V1Pod['spec'],
      },
    });
    pod.uid = created.metadata?.uid ?? '';
    pod.ip = plan.hostNetwork ? node.hostIP : network!.ip;
    const podObject: V1Pod = { ...created, status: { ...created.status, hostIP: node.hostIP, podIP: pod.ip } };
    await this.patchStatus(pod);

    const saDir = join(this.options.dir, 'pods', `${plan.namespace}_${plan.name}`, 'serviceaccount');
    mkdirSync(saDir, { recursive: true });
    await this.mountToken(pod, saDir);
    const home = join(this.options.dir, 'pods', `${plan.namespace}_${plan.name}`, 'home');
    mkdirSync(home, { recursive: true });

    const onStatus = () => {
      this.podsChanged();
      void this.patchStatus(pod).catch(() => {});
    };
    const launcher = async (container: Container) => {
      const image = await this.image(container.image);
      return this.launcher(pod, container, saDir, home, image, await this.environment(pod, container, home, image, podObject));
    };
    for (const container of template.spec.initContainers ?? []) {
      const runner = new ContainerRunner(pod, container, await launcher(container), this.backoff, onStatus);
      pod.containers.set(container.name, runner);
      await runner.runToCompletion();
    }
    for (const container of template.spec.containers) {
      const runner = new ContainerRunner(pod, container, await launcher(container), this.backoff, onStatus);
      pod.containers.set(container.name, runner);
      runner.start();
      this.probe(pod, runner, onStatus);
    }
    return pod;
  }

  /**
   * As kubelet's volume manager: a refused TokenRequest (an admission webhook that does not answer yet) is
   * retried with a back-off while the pod waits to start; here for at most a minute, then the pod fails.
   */
  private async mountToken(pod: RunningPod, dir: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (let delay = 500; ; delay = Math.min(delay * 2, 8000)) {
      try {
        return await this.writeToken(pod, dir);
      } catch (err) {
        if (Date.now() + delay > deadline) throw err;
        this.options.log?.(`token for ${pod.namespace}/${pod.name}: ${(err as Error).message}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /** TokenRequest for the pod's ServiceAccount, bound to the Pod, as kubelet's projected token volume does. */
  private async writeToken(pod: RunningPod, dir: string): Promise<void> {
    const serviceAccount = pod.plan.workload.spec.template.spec.serviceAccountName ?? 'default';
    const expirationSeconds = 3607;
    const tokenRequest = await this.core.createNamespacedServiceAccountToken({
      namespace: pod.namespace,
      name: serviceAccount,
      body: { spec: { audiences: [], expirationSeconds, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid } } },
    });
    const token = tokenRequest.status?.token;
    if (!token) throw new Error(`TokenRequest for ${pod.namespace}/${serviceAccount} returned no token`);
    const write = (file: string, content: string) => {
      const tmp = join(dir, `.${file}.tmp`);
      writeFileSync(tmp, content, { mode: 0o600 });
      renameSync(tmp, join(dir, file));
    };
    write('token', token);
    write('ca.crt', this.options.caPem);
    write('namespace', pod.namespace);
    const refresh = setTimeout(() => void this.writeToken(pod, dir).catch((err: Error) => this.options.log?.(`token refresh for ${pod.name}: ${err.message}`)), expirationSeconds * 800);
    refresh.unref();
    pod.stops.push(() => clearTimeout(refresh));
  }

  /** The container's environment, in the order Kubernetes builds it: image ENV, then the manifest's, then overrides. */
  private async environment(pod: RunningPod, container: Container, home: string, image: StagedImage, podObject: V1Pod): Promise<Record<string, string>> {
    const env: Record<string, string> = { ...image.config.env };
    const defined: Record<string, string> = {};
    for (const v of [...(container.env ?? []), ...(this.options.env?.(pod.plan, pod.node) ?? [])]) {
      let value: string | undefined;
      if (v.value !== undefined) value = expandReferences(v.value, (name) => defined[name]);
      else if (v.valueFrom?.fieldRef) value = fieldValue(podObject, v.valueFrom.fieldRef.fieldPath);
      else if (v.valueFrom?.secretKeyRef) {
        const ref = v.valueFrom.secretKeyRef;
        const secret = await this.core.readNamespacedSecret({ namespace: pod.namespace, name: ref.name }).catch(() => undefined);
        const data = secret?.data?.[ref.key];
        value = data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8');
        if (value === undefined && !ref.optional) throw new Error(`${pod.name}/${container.name}: env ${v.name}: secret ${ref.name} has no key ${ref.key}`);
      } else if (v.valueFrom?.configMapKeyRef) {
        const ref = v.valueFrom.configMapKeyRef;
        const cm = await this.core.readNamespacedConfigMap({ namespace: pod.namespace, name: ref.name }).catch(() => undefined);
        value = cm?.data?.[ref.key];
        if (value === undefined && !ref.optional) throw new Error(`${pod.name}/${container.name}: env ${v.name}: configmap ${ref.name} has no key ${ref.key}`);
      } else throw new Error(`${pod.name}/${container.name}: env ${v.name}: unsupported valueFrom ${JSON.stringify(v.valueFrom)}`);
      if (value !== undefined) defined[v.name] = value;
    }
    return {
      ...env,
      // What the kubelet adds: the API server's in-cluster address, the hostname, and an empty HOME (a
      // container has no ~/.kube/config, which client-node would otherwise prefer to in-cluster config).
      KUBERNETES_SERVICE_HOST: pod.node.apiServer.host,
      KUBERNETES_SERVICE_PORT: String(pod.node.apiServer.port),
      HOSTNAME: pod.plan.hostNetwork ? pod.node.name : pod.name,
      HOME: home,
      ...defined,
    };
  }

  private launcher(pod: RunningPod, container: Container, saDir: string, home: string, image: StagedImage, env: Record<string, string>): () => ManagedProcess {
    const argv = toHost(resolveEntrypointScript(composeCommand(container, image.config, env), env['PATH'] ?? ''), { node: process.execPath, directories: image.directories });
    const cwd = image.directories[image.config.workdir] ?? image.root;
    // A private mount namespace per container, with the token directory bind-mounted (read-only) where
    // in-cluster config reads it. The exec chain keeps one PID: ip netns exec → unshare → sh → the program.
    // Its own UTS namespace too: the hostname is the pod's name (the operator's leader identity starts with it).
    const mountToken = `mkdir -p ${SERVICE_ACCOUNT_DIR} 2>/dev/null; mount --bind "$1" ${SERVICE_ACCOUNT_DIR} && mount -o remount,bind,ro ${SERVICE_ACCOUNT_DIR} && hostname "$2" && shift 2 && exec "$@"`;
    const inMountNs = ['unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', mountToken, 'kubelet-mount', saDir, env['HOSTNAME']!, ...argv];
    const netns = pod.plan.hostNetwork ? pod.node.netns : pod.network?.netns;
    const full = netns ? ['ip', 'netns', 'exec', netns, ...inMountNs] : inMountNs;
    const logFile = join(this.options.dir, `${pod.namespace}_${pod.name}_${container.name}.log`);
    return () => startProcess(`${pod.name}/${container.name}`, full[0]!, full.slice(1), { env, cwd, logFile });
  }

  /** readinessProbe and livenessProbe (httpGet), at the manifest's period; until first ready, every 250 ms. */
  private probe(pod: RunningPod, runner: ContainerRunner, onStatus: () => void): void {
    const { readinessProbe, livenessProbe } = runner.container;
    const check = async (probe: HttpProbe): Promise<boolean> => {
      if (!probe.httpGet || runner.process?.child.exitCode !== null) return false;
      const port = probe.httpGet.port;
      const url = pod.url(typeof port === 'number' ? port : /^\d+$/.test(port) ? Number(port) : port, probe.httpGet.path ?? '/');
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
      await res?.body?.cancel();
      return res !== undefined && res.status >= 200 && res.status < 400;
    };
    // A stop can land while a probe's check is in flight; the tick must not arm another timer after it, or the
    // probes outlive the pod and keep the process that ran it alive.
    let stopped = false;
    pod.stops.push(() => (stopped = true));
    if (readinessProbe) {
      let failures = 0;
      const tick = async () => {
        const ok = await check(readinessProbe);
        if (stopped) return;
        failures = ok ? 0 : failures + 1;
        const ready = ok || (runner.ready && failures < (readinessProbe.failureThreshold ?? 3));
        if (ready !== runner.ready) {
          runner.ready = ready;
          onStatus();
        }
        const period = runner.ready ? (readinessProbe.periodSeconds ?? 10) * 1000 : 250;
        timer = setTimeout(() => void tick(), period);
      };
      let timer = setTimeout(() => void tick(), (readinessProbe.initialDelaySeconds ?? 0) * 1000);
      pod.stops.push(() => clearTimeout(timer));
    }
    if (livenessProbe) {
      let failures = 0;
      let current: ManagedProcess | undefined;
      const tick = async () => {
        if (runner.process !== current) {
          // A new run: its initial delay starts again.
          current = runner.process;
          failures = 0;
          timer = setTimeout(() => void tick(), (livenessProbe.initialDelaySeconds ?? 0) * 1000);
          return;
        }
        if (current && current.child.exitCode === null) {
          failures = (await check(livenessProbe)) ? 0 : failures + 1;
          if (stopped) return;
          if (failures >= (livenessProbe.failureThreshold ?? 3)) {
            this.options.log?.(`${pod.name}/${runner.container.name}: liveness probe failed ${failures} times, restarting`);
            failures = 0;
            void current.stop((pod.plan.workload.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000);
          }
        }
        timer = setTimeout(() => void tick(), (livenessProbe.periodSeconds ?? 10) * 1000);
      };
      let timer = setTimeout(() => void tick(), 0);
      pod.stops.push(() => clearTimeout(timer));
    }
  }

  private async patchStatus(pod: RunningPod): Promise<void> {
    const containers = pod.plan.workload.spec.template.spec.containers;
    const statuses = containers.map((c) => {
      const runner = pod.containers.get(c.name);
      return { name: c.name, image: c.image, imageID: '', ready: runner?.ready ?? false, restartCount: runner?.restartCount ?? 0, started: runner !== undefined, state: runner ? { running: {} } : { waiting: { reason: 'PodInitializing' } } };
    });
    const ready = statuses.every((s) => s.ready);
    const condition = (type: string, status: boolean) => ({ type, status: status ? 'True' : 'False', lastTransitionTime: new Date().toISOString() });
    await this.core.patchNamespacedPodStatus(
      {
        namespace: pod.namespace,
        name: pod.name,
        body: {
          status: {
            phase: 'Running',
            hostIP: pod.node.hostIP,
            podIP: pod.ip,
            podIPs: [{ ip: pod.ip }],
            conditions: [condition('PodScheduled', true), condition('Initialized', true), condition('ContainersReady', ready), condition('Ready', ready)],
            containerStatuses: statuses,
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /**
   * What the endpoints controller would publish for a Service: the ready pods its selector matches, at the
   * port its targetPort names. Pod IPs are routable from this machine's network namespace, so the API server
   * can reach a webhook behind a Service here: point the webhook's clientConfig at `https://<ip>:<port>`, or
   * at a loopback forwarder to it (dev/local-cluster/netns tcpForward) when its serving certificate names 127.0.0.1.
   */
  serviceEndpoints(service: K8sObject, portName?: string): { ip: string; port: number; pod: RunningPod }[] {
    const selector = (service['spec']?.selector ?? {}) as Record<string, string>;
    const ports = (service['spec']?.ports ?? []) as { name?: string; port: number; targetPort?: number | string }[];
    const servicePort = portName === undefined ? ports[0] : ports.find((p) => p.name === portName);
    if (!servicePort) throw new Error(`Service ${service.metadata.name} has no port ${portName ?? ''}`);
    const target = servicePort.targetPort ?? servicePort.port;
    return this.pods
      .filter((pod) => pod.namespace === (service.metadata.namespace ?? 'default'))
      .filter((pod) => Object.entries(selector).every(([k, v]) => pod.plan.workload.spec.template.metadata?.labels?.[k] === v))
      .filter((pod) => [...pod.containers.values()].every((c) => c.ready))
      .map((pod) => ({ ip: pod.ip, port: Number(new URL(pod.url(typeof target === 'number' ? target : /^\d+$/.test(target) ? Number(target) : target)).port), pod }));
  }

  /** Stops every container (SIGTERM, then SIGKILL after the pod's grace period) and deletes the Pods. */
  async stop(graceMsCap = 30_000): Promise<void> {
    await Promise.all(
      this.pods.map(async (pod) => {
        for (const stop of pod.stops) stop();
        const grace = Math.min(graceMsCap, (pod.plan.workload.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000);
        await Promise.all([...pod.containers.values()].map((c) => c.stop(grace)));
        await this.core.deleteNamespacedPod({ namespace: pod.namespace, name: pod.name, gracePeriodSeconds: 0 }).catch(() => {});
      }),
    );
    this.pods.length = 0;
    this.podsChanged();
  }
}

/** The downward API's fieldRef paths: metadata.name, .namespace, .uid, .labels['k'], .annotations['k'], spec.*, status.*. */
export function fieldValue(pod: V1Pod, fieldPath: string): string {
  const labelled = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (labelled) return pod.metadata?.[labelled[1] as 'labels' | 'annotations']?.[labelled[2]!] ?? '';
  const supported = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.podIP'];
  if (!supported.includes(fieldPath)) throw new Error(`fieldRef ${fieldPath} is not supported by the downward API model (${supported.join(', ')})`);
  let value: unknown = pod;
  for (const part of fieldPath.split('.')) value = (value as Record<string, unknown> | undefined)?.[part];
  return value === undefined || value === null ? '' : String(value);
}

export type { Container, EnvVar, HttpProbe };
export { composeCommand, expandReferences, resolveEntrypointScript, toHost };
