/**
 * The operator's sections: P3 (convergence at scale and the ARM call budget), the operator half of P4
 * (RSS with many PodIdentities and pods) and the P3 half of P5 (time to Ready as N grows).
 *
 * Each N gets a fresh operator process restricted to a fresh namespace (`--watch-namespace`), so one run's
 * objects never count in the next. The baseline for the time to Ready is the ARM floor: the same writes
 * (identity PUT, role assignment PUT, federated credential PUT per PodIdentity) made by a plain client at
 * the operator's default concurrency against the same emulator latency, in the same run.
 */
import { CustomObjectsApi, Watch } from '@kubernetes/client-node';
import { pooledApiClient } from '../../lib/k8s/pooled.js';
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, TOKEN_EXCHANGE_AUDIENCE, VERSION, type PodIdentity } from '../../lib/api/types.js';
import type { RequestLogEntry } from '../azure-emulator/emulator.js';
import { claimsOf, operatorToken, rawRequest } from '../azure-emulator/test-fixture.js';
import { BENCH_NODE, BenchObjects, mapLimit, podAddress, TOKEN_PATH, type BenchEnv } from './fixture.js';
import type { BenchOptions } from './options.js';
import { OPERATOR_RG, startOperatorProcess, type OperatorProcess } from './operator-process.js';
import { lineChartSvg, notMeasured, round, section, type GoalBook, type Section } from './report.js';
import { cpuSeconds, OPERATOR_IMAGE, REPO } from './processes.js';
import { apiServerCounts, counterBy, countsDelta, type ApiServerCounts } from './api-server-metrics.js';

export interface OperatorSections {
  p3: Section;
  p4: Section;
  p5: Section;
  p5Chart?: string;
}

export interface OperatorWanted {
  p3: boolean;
  p4: boolean;
  p5: boolean;
}

type Log = (msg: string) => void;

/** The operator's default --workers: the floor uses the same concurrency. */
const OPERATOR_WORKERS = 4;
const READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7';
const WRITE_ROUTES = ['identities.put', 'roleAssignments.put', 'fic.put'] as const;

/** Peak operator RSS with 1,000 PodIdentities and 5,000 pods (issue 14). */
const OPERATOR_RSS_GOAL_MB = 250;
/** Convergence may take at most this multiple of the ARM floor (issue 14). */
const FLOOR_RATIO_GOAL = 1.3;

/** CPU seconds each process spent in one window. */
interface CpuSpent {
  operator: number;
  apiServer: number;
  etcd: number;
  /** The bench process: the in-process Azure emulator, the apply and the Ready watch (the floor: emulator and client). */
  bench: number;
}

interface ConvergenceRun {
  n: number;
  namespace: string;
  applyMs: number;
  readyMs: number | null;
  ready: number;
  /** The mean of the floor measured right before and right after the operator's run. */
  floorMs: number;
  floorRunsMs: number[];
  loadAverage: { floor: number[]; operator: number };
  cpu: CpuSpent;
  floorCpu: { bench: number };
  counts: Record<string, number>;
  /** What the API server counted from apply until all Ready (its /metrics, read outside the CPU window). */
  api: ApiServerCounts;
  /** The operator's reconciles by result (its podidentity_operator_reconcile_total), read after all Ready. */
  reconciles: Record<string, number>;
  writes: Record<string, { total: number; unique: number }>;
  steady: { windowMs: number; writes: number; reads: number; byRoute: Record<string, number> };
  operatorRssBytes: number;
  requestLogFile: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pidBody(name: string, subscriptionId: string) {
  return {
    apiVersion: API_VERSION,
    kind: 'PodIdentity',
    metadata: { name },
    spec: {
      identity: { managed: {} },
      roleAssignments: [{ role: 'Reader', scope: `/subscriptions/${subscriptionId}/resourceGroups/${OPERATOR_RG}` }],
      serviceAccounts: ['app'],
      mode: 'Federated',
    },
  };
}

async function countReady(env: BenchEnv, namespace: string): Promise<number> {
  const list = (await env.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL })) as { items: PodIdentity[] };
  return list.items.filter(isReady).length;
}

const isReady = (p: PodIdentity): boolean => !!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

/**
 * Counts Ready PodIdentities in `namespace` from a watch, and notes when all `n` first were. A watch costs the
 * API server one event per write the operator makes anyway; listing 1,000 PodIdentities every half second (a
 * consistent read from etcd, decoded and encoded again) took CPU from the API server under measurement.
 */
class ReadyWatch {
  private allReadyAt: number | null = null;
  private readonly ready = new Set<string>();
  private request?: { abort(): void };
  private stopped = false;
  private resourceVersion = '';

  constructor(private readonly env: BenchEnv, private readonly namespace: string, private readonly n: number) {}

  async start(): Promise<void> {
    await this.watch();
  }

  /** Lists (again, after the watch expired) and rebuilds the set from what the list holds. */
  private async list(): Promise<void> {
    const list = (await this.env.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.namespace, plural: PODIDENTITY_PLURAL })) as { items: PodIdentity[]; metadata?: { resourceVersion?: string } };
    this.ready.clear();
    for (const p of list.items) this.note('ADDED', p);
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
  }

  private note(type: string, p: PodIdentity): void {
    const name = p.metadata.name ?? '';
    if (p.metadata.resourceVersion) this.resourceVersion = p.metadata.resourceVersion;
    if (type !== 'DELETED' && isReady(p)) this.ready.add(name);
    else this.ready.delete(name);
    if (this.allReadyAt === null && this.ready.size >= this.n) this.allReadyAt = Date.now();
  }

  /**
   * One watch from the last resourceVersion seen; started again when the server ends it, after a fresh list
   * when it ended with an error (410 Gone: that version is no longer kept).
   */
  private async watch(): Promise<void> {
    if (this.stopped) return;
    if (!this.resourceVersion) await this.list();
    const again = (): void => void sleep(200).then(() => this.watch()).catch(again);
    this.request = await new Watch(this.env.kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PODIDENTITY_PLURAL}`,
      { resourceVersion: this.resourceVersion, allowWatchBookmarks: true },
      (type, obj: PodIdentity) => {
        if (type === 'ERROR') this.resourceVersion = '';
        else if (type === 'BOOKMARK') this.resourceVersion = obj.metadata.resourceVersion ?? this.resourceVersion;
        else this.note(type, obj);
      },
      (err) => {
        if (err) this.resourceVersion = '';
        again();
      },
    );
  }

  /** Resolves with the time all were Ready, or null at `deadline`. */
  async allReady(deadline: number): Promise<number | null> {
    while (this.allReadyAt === null && Date.now() < deadline) await sleep(50);
    return this.allReadyAt;
  }

  count(): number {
    return this.ready.size;
  }

  stop(): void {
    this.stopped = true;
    this.request?.abort();
  }
}

function cpuNow(env: BenchEnv, op: OperatorProcess): CpuSpent {
  const self = process.cpuUsage();
  return { operator: cpuSeconds(op.pid()), apiServer: cpuSeconds(env.apiServerPid()), etcd: cpuSeconds(env.cp.pids.etcd), bench: (self.user + self.system) / 1e6 };
}

function cpuDelta(after: CpuSpent, before: CpuSpent): CpuSpent {
  return { operator: after.operator - before.operator, apiServer: after.apiServer - before.apiServer, etcd: after.etcd - before.etcd, bench: after.bench - before.bench };
}

const benchCpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

function between(log: RequestLogEntry[], from: number, to: number): RequestLogEntry[] {
  return log.filter((e) => e.at >= from && e.at <= to);
}

/** The operator's reconciles so far by result (a fresh operator per N, so no baseline is needed). */
async function reconcileCounts(op: OperatorProcess): Promise<Record<string, number>> {
  const text = await fetch(`${op.metricsOrigin}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()).catch(() => '');
  return counterBy(text, 'podidentity_operator_reconcile_total', (l) => l['result'] ?? '');
}

/** The ARM floor: a plain client makes the writes one PodIdentity needs, `lanes` PodIdentities at a time. */
async function armFloor(env: BenchEnv, n: number, lanes: number): Promise<number> {
  const { emu } = env.fx;
  const token = await operatorToken(env.fx);
  const rg = `bench-floor-${randomUUID().slice(0, 6)}`;
  emu.seed.resourceGroup(rg);
  const headers = { authorization: `Bearer ${token}` };
  const put = async (path: string, body: unknown) => {
    const res = await rawRequest(`${emu.armEndpoint}${path}`, { method: 'PUT', headers, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`floor PUT ${path}: ${res.status} ${res.text.slice(0, 300)}`);
    return res.json as { id: string; properties: { principalId: string } };
  };
  const t0 = performance.now();
  await mapLimit(Array.from({ length: n }, (_, i) => i), lanes, async (i) => {
    const id = await put(`/subscriptions/${emu.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/floor-${i}?api-version=2024-11-30`, { location: 'eastus' });
    const scope = `/subscriptions/${emu.subscriptionId}/resourceGroups/${rg}`;
    await put(`${scope}/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}?api-version=2022-04-01`, {
      properties: { roleDefinitionId: `/subscriptions/${emu.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${READER}`, principalId: id.properties.principalId, principalType: 'ServicePrincipal' },
    });
    await put(`${id.id}/federatedIdentityCredentials/floor?api-version=2024-11-30`, {
      properties: { issuer: env.cp.issuer, subject: `system:serviceaccount:floor:app`, audiences: [TOKEN_EXCHANGE_AUDIENCE] },
    });
  });
  return performance.now() - t0;
}

async function convergence(env: BenchEnv, opts: BenchOptions, n: number, log: Log, keepOperator: boolean): Promise<{ run: ConvergenceRun; op?: OperatorProcess }> {
  const { emu } = env.fx;
  const objects = new BenchObjects(env);
  const namespace = await objects.namespace(`bench-p3-${n}`);
  await objects.serviceAccount(namespace, 'app');
  // The floor right before and right after the operator's run: load from other work on the machine moves both.
  const floor = async () => {
    log(`P3: N=${n}: ARM floor (plain client, ${OPERATOR_WORKERS} lanes)`);
    const load = loadavg()[0]!;
    const cpu0 = benchCpu();
    const ms = await armFloor(env, n, OPERATOR_WORKERS);
    return { ms, load, cpu: benchCpu() - cpu0 };
  };
  const floorBefore = await floor();
  // The apply reuses its connections, as kubectl and client-go do: client-node's own typed client makes a
  // new undici agent per call, so each create paid a TLS handshake, charged to the API server's CPU here.
  const apply = pooledApiClient(env.kc, CustomObjectsApi);
  const op = await startOperatorProcess(env, `operator-p3-${n}`, [`--watch-namespace=${namespace}`]);
  const watch = new ReadyWatch(env, namespace, n);
  try {
    await watch.start();
    log(`P3: N=${n}: applying PodIdentities`);
    const before = emu.requests.counts();
    const api0 = await apiServerCounts(env);
    const cpu0 = cpuNow(env, op);
    const t0 = Date.now();
    await mapLimit(Array.from({ length: n }, (_, i) => i), 16, (i) =>
      apply.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: pidBody(`pid-${i}`, emu.subscriptionId) }),
    );
    const applyMs = Date.now() - t0;
    const readyAt = await watch.allReady(t0 + opts.p3TimeoutMs);
    const cpu = cpuDelta(cpuNow(env, op), cpu0);
    const api = countsDelta(await apiServerCounts(env), api0);
    const reconciles = await reconcileCounts(op);
    const operatorLoad = loadavg()[0]!;
    const ready = readyAt === null ? watch.count() : n;
    const convergedAt = Date.now();
    const counts = delta(emu.requests.counts(), before);
    const converging = between(emu.requests.log(), t0, convergedAt);
    const writes: ConvergenceRun['writes'] = {};
    for (const route of WRITE_ROUTES) {
      const puts = converging.filter((e) => e.route === route && e.method === 'PUT');
      writes[route] = { total: puts.length, unique: new Set(puts.map((e) => e.path.toLowerCase())).size };
    }
    const steadyMs = opts.smoke ? 2_000 : 30_000;
    log(`P3: N=${n}: ${readyAt ? 'all Ready' : `${ready}/${n} Ready at the time limit`}; watching steady state for ${steadyMs / 1000} s`);
    const s0 = Date.now();
    await sleep(steadyMs);
    const steadyEntries = between(emu.requests.log(), s0, Date.now()).filter((e) => !e.route.startsWith('aad.') && !e.route.startsWith('imds.'));
    const byRoute: Record<string, number> = {};
    for (const e of steadyEntries) byRoute[`${e.method} ${e.route}`] = (byRoute[`${e.method} ${e.route}`] ?? 0) + 1;
    const requestLogFile = join(opts.out, `p3-requests-${n}.json`);
    writeFileSync(requestLogFile, JSON.stringify(converging, null, 0));
    watch.stop();
    const floorAfter = await floor();
    const run: ConvergenceRun = {
      n,
      namespace,
      applyMs,
      readyMs: readyAt ? readyAt - t0 : null,
      ready,
      floorMs: (floorBefore.ms + floorAfter.ms) / 2,
      floorRunsMs: [floorBefore.ms, floorAfter.ms],
      loadAverage: { floor: [floorBefore.load, floorAfter.load], operator: operatorLoad },
      cpu,
      floorCpu: { bench: (floorBefore.cpu + floorAfter.cpu) / 2 },
      counts,
      api,
      reconciles,
      writes,
      steady: { windowMs: steadyMs, writes: steadyEntries.filter((e) => e.method !== 'GET').length, reads: steadyEntries.filter((e) => e.method === 'GET').length, byRoute },
      operatorRssBytes: op.rss(),
      requestLogFile,
    };
    if (keepOperator) return { run, op };
    await op.stop();
    return { run };
  } catch (err) {
    watch.stop();
    await op.stop();
    throw err;
  }
}

interface NodeModeRun {
  pods: number;
  identities: number;
  scaleSets: number;
  readyMs: number | null;
  ready: number;
  patches: number;
  maxPatchesPerWindow: number;
  maxPatchesPerScaleSetWindow: number;
  windowMs: number;
  firstTokenMs: number | null;
  firstTokenDetail: string;
}

/**
 * P3 Node mode: `nodePods` pods on 10 nodes of 2 scale sets, bound to `nodeIdentities` Node-mode PodIdentities.
 * Then a new pod on the agent's node (seeded as an instance of the first scale set, at the agent's address)
 * bound to a new PodIdentity: the time until the agent hands it its token.
 */
async function nodeMode(env: BenchEnv, opts: BenchOptions, log: Log, agentOrigin: string | undefined): Promise<NodeModeRun> {
  const { emu } = env.fx;
  const objects = new BenchObjects(env);
  const namespace = await objects.namespace('bench-p3-node');
  await objects.serviceAccount(namespace, 'app');
  const nodeRg = `bench-mc-${randomUUID().slice(0, 6)}`;
  const nodes: { name: string; providerID: string }[] = [];
  for (let k = 0; k < 2; k++) {
    const instances = Array.from({ length: 5 }, (_, i) => ({ nodeName: `bench-nm-${k}-${i}`, ip: `127.250.${k}.${i + 1}`, instanceId: String(i) }));
    // The agent's own node is an instance of the first scale set, at the address the agent calls IMDS from.
    if (k === 0 && agentOrigin) instances.push({ nodeName: BENCH_NODE, ip: '127.0.0.1', instanceId: '99' });
    const view = emu.seed.scaleSet({ resourceGroup: nodeRg, name: `pool${k}`, instances });
    nodes.push(...view.instances.map((i) => ({ name: i.nodeName, providerID: i.providerID })));
  }
  for (const n of nodes) {
    await env.core.createNode({ body: { metadata: { name: n.name }, spec: { providerID: n.providerID } } }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  }
  const workers = nodes.filter((n) => n.name !== BENCH_NODE);
  const body = (name: string) => ({
    apiVersion: API_VERSION,
    kind: 'PodIdentity',
    metadata: { name },
    spec: { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: `/subscriptions/${emu.subscriptionId}/resourceGroups/${OPERATOR_RG}` }], mode: 'Node' },
  });
  const op = await startOperatorProcess(env, 'operator-p3-node', [`--watch-namespace=${namespace}`]);
  try {
    log(`P3 Node mode: ${opts.nodeIdentities} PodIdentities, ${opts.nodePods} pods on ${workers.length} nodes of 2 scale sets`);
    const t0 = Date.now();
    await mapLimit(Array.from({ length: opts.nodeIdentities }, (_, i) => i), 16, (i) =>
      env.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: body(`nm-${i}`) }),
    );
    await mapLimit(Array.from({ length: opts.nodePods }, (_, i) => i), 16, (i) =>
      env.core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name: `nm-pod-${i}`, labels: { 'podidentity.dev/identity': `nm-${i % opts.nodeIdentities}` } },
          spec: { nodeName: workers[i % workers.length]!.name, serviceAccountName: 'app', automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
        },
      }),
    );
    let ready = 0;
    let readyAt: number | null = null;
    while (Date.now() < t0 + opts.p3TimeoutMs) {
      ready = await countReady(env, namespace);
      if (ready === opts.nodeIdentities) {
        readyAt = Date.now();
        break;
      }
      await sleep(250);
    }
    const windowMs = 2_000; // the operator's default --batch-window
    const patchEntries = between(emu.requests.log(), t0, Date.now()).filter((e) => e.route === 'vmss.patch');
    const patches = patchEntries.map((e) => e.at);
    // Any window of the batch length can straddle two batches (a flush at its start, the next at its end), so
    // the budget is checked per scale set: at most one PATCH to a scale set in any [t, t + window).
    const inWindow = (list: number[]) => Math.max(0, ...list.map((t) => list.filter((at) => at >= t && at < t + windowMs).length));
    const byScaleSet = new Map<string, number[]>();
    for (const e of patchEntries) {
      const key = e.path.split('?')[0]!.toLowerCase();
      byScaleSet.set(key, [...(byScaleSet.get(key) ?? []), e.at]);
    }
    const maxPerScaleSetWindow = Math.max(0, ...[...byScaleSet.values()].map(inWindow));
    const maxPerWindow = inWindow(patches);

    let firstTokenMs: number | null = null;
    let firstTokenDetail = 'no agent in this run';
    if (agentOrigin) {
      log('P3 Node mode: time to first token for a new pod');
      const ip = podAddress(70_000);
      const t1 = Date.now();
      await env.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: body('nm-new') });
      await objects.pod(namespace, 'nm-new-pod', ip, { 'podidentity.dev/identity': 'nm-new' }, 'app');
      let last = '';
      while (Date.now() < t1 + 120_000) {
        const res = await rawRequest(`${agentOrigin}${TOKEN_PATH}`, { headers: { Metadata: 'true' }, localAddress: ip }).catch((err: Error) => ({ status: 0, text: err.message, json: undefined }));
        last = `${res.status} ${res.text.slice(0, 200)}`;
        if (res.status === 200) {
          firstTokenMs = Date.now() - t1;
          const claims = claimsOf((res.json as { access_token: string }).access_token);
          const pid = (await env.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'nm-new' })) as PodIdentity;
          firstTokenDetail = claims['oid'] === pid.status?.principalId ? 'token for the new PodIdentity' : `WRONG identity: oid ${String(claims['oid'])}`;
          break;
        }
        await sleep(100);
      }
      if (firstTokenMs === null) firstTokenDetail = `no token within 120 s; last answer ${last}`;
    }
    return { pods: opts.nodePods, identities: opts.nodeIdentities, scaleSets: 2, readyMs: readyAt ? readyAt - t0 : null, ready, patches: patches.length, maxPatchesPerWindow: maxPerWindow, maxPatchesPerScaleSetWindow: maxPerScaleSetWindow, windowMs, firstTokenMs, firstTokenDetail };
  } finally {
    await op.stop();
  }
}

/** The libraries the operator's process imports at start (arm-compute and arm-containerservice load on first use). */
const OPERATOR_LIBRARIES = ['@kubernetes/client-node', '@azure/identity', '@azure/arm-msi', '@azure/arm-authorization', 'prom-client', 'winston'];

interface HeapFigures {
  rss: number;
  total: number;
  used: number;
  external: number;
}

/** The operator's own view of its memory, from prom-client's default process metrics. */
async function heapFigures(op: OperatorProcess): Promise<HeapFigures | undefined> {
  const text = await fetch(`${op.metricsOrigin}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()).catch(() => '');
  const gauge = (name: string) => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const figures = { rss: gauge('process_resident_memory_bytes'), total: gauge('nodejs_heap_size_total_bytes'), used: gauge('nodejs_heap_size_used_bytes'), external: gauge('nodejs_external_memory_bytes') };
  return Object.values(figures).every(Number.isFinite) ? figures : undefined;
}

/** The kernel's record of the most RSS the process ever had (bytes). */
function peakRssBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** RSS of a fresh node (the product's flags) importing nothing, each module alone, then all of them. */
async function importRssOf(modules: string[]): Promise<{ module: string; rssBytes: number }[]> {
  const out: { module: string; rssBytes: number }[] = [];
  for (const list of [[], ...modules.map((m) => [m]), modules]) {
    const code = `${list.map((m) => `await import(${JSON.stringify(m)});`).join(' ')} await new Promise((r) => setTimeout(r, 100)); process.stdout.write(String(process.memoryUsage().rss));`;
    const { stdout } = await promisify(execFile)(process.execPath, [...OPERATOR_IMAGE.nodeFlags, '--input-type=module', '-e', code], { cwd: REPO, timeout: 60_000, env: { ...process.env, ...OPERATOR_IMAGE.env } });
    out.push({ module: list.length === 0 ? '(nothing)' : list.length === 1 ? list[0]! : 'all of the above', rssBytes: Number(stdout) });
  }
  return out;
}

async function operatorMemory(env: BenchEnv, opts: BenchOptions, log: Log, reuse?: { namespace: string; op: OperatorProcess; n: number }): Promise<{ section: Section; rssBytes: number; baselineBytes: number; librariesBytes: number; heap?: HeapFigures }> {
  const s = section('P4', 'Memory (operator half)');
  let namespace: string;
  let op: OperatorProcess;
  let pids: number;
  if (reuse && reuse.n >= opts.operatorIdentities) {
    ({ namespace, op } = reuse);
    pids = reuse.n;
  } else {
    await reuse?.op.stop();
    const { run, op: fresh } = await convergence(env, opts, opts.operatorIdentities, log, true);
    namespace = run.namespace;
    op = fresh!;
    pids = run.n;
  }
  try {
    const rssBefore = op.rss();
    log(`P4: ${opts.operatorPods} pods for the operator to cache`);
    const core = env.core;
    await mapLimit(Array.from({ length: opts.operatorPods }, (_, i) => i), 16, (i) =>
      core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name: `op-pod-${i}`, labels: { 'podidentity.dev/identity': `pid-${i % pids}` } },
          spec: { nodeName: `bench-p4-node-${i % 50}`, serviceAccountName: 'app', automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
        },
      }),
    );
    // The operator reconciles the PodIdentities these pods select; wait until its RSS stops growing.
    let rss = op.rss();
    for (let i = 0; i < 20; i++) {
      await sleep(500);
      const next = op.rss();
      if (Math.abs(next - rss) < 1 << 20 && i >= 4) {
        rss = Math.max(rss, next);
        break;
      }
      rss = Math.max(rss, next);
    }
    const heap = await heapFigures(op);
    const hwm = peakRssBytes(op.pid());
    // Baseline: an idle Node process of the same binary, measured now.
    const baselineBytes = await idleNodeRss();
    const mb = (b: number) => round(b / 2 ** 20, 1);
    s.tables.push({
      title: 'Operator RSS',
      columns: ['Process', 'PodIdentities', 'Pods', 'RSS (MB)', 'Ratio to idle node'],
      rows: [
        ['operator, PodIdentities Ready, before pods', pids, 0, mb(rssBefore), round(rssBefore / baselineBytes, 2)],
        ['operator, with pods', pids, opts.operatorPods, mb(rss), round(rss / baselineBytes, 2)],
        ['operator, peak over its whole life (VmHWM)', pids, opts.operatorPods, mb(hwm), round(hwm / baselineBytes, 2)],
        ['baseline: idle `node` process', '—', '—', mb(baselineBytes), 1],
      ],
    });
    if (heap) {
      s.tables.push({
        title: 'Operator heap with pods (its own /metrics: prom-client\'s nodejs_* gauges)',
        columns: ['RSS (MB)', 'V8 heap total (MB)', 'V8 heap used (MB)', 'external (MB)', 'RSS outside the V8 heap (MB): code, native libraries, buffers'],
        rows: [[mb(heap.rss), mb(heap.total), mb(heap.used), mb(heap.external), mb(heap.rss - heap.total)]],
      });
    }
    // What the operator's libraries cost before it does any work: the floor under its RSS.
    const imports = await importRssOf(OPERATOR_LIBRARIES);
    const bare = imports[0]!.rssBytes;
    s.tables.push({
      title: 'What the operator\'s libraries cost: RSS of a fresh node process (with the image\'s node flags) after importing only that module, and all of them together',
      columns: ['Module', 'RSS (MB)', 'Added to a bare node (MB)'],
      rows: imports.map((i) => [i.module, mb(i.rssBytes), i.module === '(nothing)' ? '—' : mb(i.rssBytes - bare)]),
    });
    s.notes.push(`Operator run with --watch-namespace on the namespace that holds its ${pids} PodIdentities and the ${opts.operatorPods} pods (no kubelet: the pods stay Pending), pods spread over 50 node names, each selected by one PodIdentity and using the service account the PodIdentities already federate. The operator runs with its image's node flags (${OPERATOR_IMAGE.nodeFlags.join(' ')}): without them V8 sizes the young generation from this machine's memory rather than a container's.`);
    s.notes.push('The goal is checked against the peak: the kernel\'s high-water mark of the operator\'s RSS (VmHWM in /proc/<pid>/status), which covers converging the PodIdentities and taking in the pods, not only the moments sampled.');
    const peak = Math.max(rss, rssBefore, hwm);
    const together = imports[imports.length - 1]!.rssBytes;
    s.data = { rssBytes: peak, rssWithPodsBytes: rss, rssBeforePodsBytes: rssBefore, peakRssBytes: hwm, heap, baselineBytes, pids, pods: opts.operatorPods, importRss: imports, librariesRssBytes: together };
    return { section: s, rssBytes: peak, baselineBytes, librariesBytes: together, heap };
  } finally {
    await op.stop();
  }
}

async function idleNodeRss(): Promise<number> {
  const { startProcess } = await import('../support/processes.js');
  const { rssBytes } = await import('./processes.js');
  const proc = startProcess('idle-node', process.execPath, ['-e', 'setInterval(() => {}, 1000); process.stdout.write("up\\n")']);
  try {
    for (let i = 0; i < 50 && !proc.output().includes('up'); i++) await sleep(100);
    await sleep(300);
    return rssBytes(proc.pid);
  } finally {
    await proc.stop();
  }
}

export async function runOperatorSections(env: BenchEnv, opts: BenchOptions, goals: GoalBook, log: Log, want: OperatorWanted, agentOrigin?: string): Promise<OperatorSections> {
  const p3 = section('P3', 'Convergence at scale (operator)');
  const p5 = section('P5', 'P3 time vs N');
  let p4: Section = notMeasured('P4', 'Memory (operator half)', 'skipped: P4 not in --only');
  let p5Chart: string | undefined;
  const runs: ConvergenceRun[] = [];
  const latency = env.fx.emu.faults.set({ match: { path: '/subscriptions/' }, latencyMs: opts.armLatencyMs });
  let kept: { namespace: string; op: OperatorProcess; n: number } | undefined;
  let nodeRun: NodeModeRun | undefined;
  try {
    // Node mode first, so the largest Federated run's operator can stay up for the operator half of P4.
    if (want.p3 && opts.nodePods > 0) nodeRun = await nodeMode(env, opts, log, agentOrigin);
    if (want.p3 || want.p5) {
      const ns = [...opts.p3N].sort((a, b) => a - b);
      for (const n of ns) {
        const last = n === ns[ns.length - 1];
        const { run, op } = await convergence(env, opts, n, log, last && want.p4);
        runs.push(run);
        if (op) kept = { namespace: run.namespace, op, n };
      }
    }

    if (want.p4) {
      const mem = await operatorMemory(env, opts, log, kept);
      kept = undefined;
      p4 = mem.section;
      const mb = round(mem.rssBytes / 2 ** 20, 1);
      const libs = round(mem.librariesBytes / 2 ** 20, 1);
      const heap = mem.heap ? `; with pods: V8 heap ${round(mem.heap.total / 2 ** 20, 1)} MB of which ${round(mem.heap.used / 2 ** 20, 1)} MB used` : '';
      if (mem.rssBytes > OPERATOR_RSS_GOAL_MB * 2 ** 20) {
        const clientNode = (mem.section.data['importRss'] as { module: string; rssBytes: number }[]).find((i) => i.module === '@kubernetes/client-node');
        const bare = (mem.section.data['importRss'] as { module: string; rssBytes: number }[])[0]!.rssBytes;
        p4.notes.push(`Not met: the operator's libraries take ${libs} MB before it does any work${clientNode ? `, ${round((clientNode.rssBytes - bare) / 2 ** 20, 1)} MB of it @kubernetes/client-node's generated API and models` : ''}; the rest is its V8 heap (see the heap table) and the garbage converging and taking in pods leaves before the collector returns it. Removing the library floor means the operator's Kubernetes writes (finalizers, status and Events already are raw requests; the Lease, the ownership ConfigMap and the webhook configuration are not) going through raw requests, and the in-cluster credential source that loads no client-node.`);
      }
      goals.check('P4', `operator RSS with ${mem.section.data['pids'] as number} PodIdentities and ${opts.operatorPods} pods`, `≤ ${OPERATOR_RSS_GOAL_MB} MB`, `${mb} MB peak (${round(mem.rssBytes / mem.baselineBytes, 2)} × idle node; its libraries alone: ${libs} MB${heap})`, mem.rssBytes <= OPERATOR_RSS_GOAL_MB * 2 ** 20);
    }
  } finally {
    await kept?.op.stop();
    env.fx.emu.faults.remove(latency);
  }

  if (want.p3) {
    const sec = (ms: number | null) => (ms === null ? 'not Ready' : round(ms / 1000, 1));
    p3.tables.push({
      title: `Federated, 1 role each, ARM latency ${opts.armLatencyMs} ms per call; operator with default flags (--workers ${OPERATOR_WORKERS})`,
      columns: ['N', 'Apply (s)', 'All Ready (s)', 'Ready', 'ARM floor (s): before, after', 'Ready / floor', 'Load avg (1 min): floor, operator', 'identity PUTs (unique)', 'role PUTs (unique)', 'FIC PUTs (unique)'],
      rows: runs.map((r) => [r.n, sec(r.applyMs), sec(r.readyMs), `${r.ready}/${r.n}`, `${sec(r.floorMs)}: ${r.floorRunsMs.map((ms) => sec(ms)).join(', ')}`, r.readyMs === null ? '—' : round(r.readyMs / r.floorMs, 2), `${r.loadAverage.floor.map((l) => round(l, 1)).join(', ')}; ${round(r.loadAverage.operator, 1)}`, `${r.writes['identities.put']!.total} (${r.writes['identities.put']!.unique})`, `${r.writes['roleAssignments.put']!.total} (${r.writes['roleAssignments.put']!.unique})`, `${r.writes['fic.put']!.total} (${r.writes['fic.put']!.unique})`]),
    });
    const ms = (s: number, n: number) => round((s * 1000) / n, 2);
    p3.tables.push({
      title: 'CPU time from apply until all Ready, per PodIdentity (ms); unlike wall time, it does not stretch when other work shares the cores',
      columns: ['N', 'operator', 'kube-apiserver', 'etcd', 'bench process (emulator, apply, watch)', 'floor: bench process (emulator, client)', 'operator CPU / wall (cores busy)'],
      rows: runs.map((r) => [r.n, ms(r.cpu.operator, r.n), ms(r.cpu.apiServer, r.n), ms(r.cpu.etcd, r.n), ms(r.cpu.bench, r.n), ms(r.floorCpu.bench, r.n), r.readyMs === null ? '—' : round(r.cpu.operator / (r.readyMs / 1000), 2)]),
    });
    // Each: one row per key any run saw, one column per N, the count divided by N.
    const perPodIdentity = (title: string, label: string, of: (r: ConvergenceRun) => Record<string, number>) => {
      const keys = [...new Set(runs.flatMap((r) => Object.keys(of(r))))].sort();
      p3.tables.push({ title, columns: [label, ...runs.map((r) => `N=${r.n}`)], rows: keys.map((k) => [k, ...runs.map((r) => round((of(r)[k] ?? 0) / r.n, 3))]) });
    };
    perPodIdentity('Emulator requests by type per PodIdentity, from apply until all Ready', 'Request', (r) => r.counts);
    perPodIdentity('API-server requests by verb and resource per PodIdentity, from apply until all Ready (kube-apiserver\'s apiserver_request_total; the apply\'s POSTs and the bench\'s Ready watch included, a WATCH counts when it ends)', 'Request', (r) => r.api.requests);
    perPodIdentity('Operator reconciles per PodIdentity by result, from its start until all Ready (its podidentity_operator_reconcile_total)', 'Result', (r) => r.reconciles);
    perPodIdentity('Watch events the API server sent per PodIdentity, by kind (to every watcher: the operator\'s informers, the agent\'s and the bench\'s Ready watch)', 'Kind', (r) => r.api.watchEvents);
    p3.tables.push({
      title: 'Steady state after convergence (ARM requests only)',
      columns: ['N', 'Window (s)', 'Writes', 'Reads', 'By type'],
      rows: runs.map((r) => [r.n, r.steady.windowMs / 1000, r.steady.writes, r.steady.reads, JSON.stringify(r.steady.byRoute)]),
    });
    p3.notes.push(
      'The ARM floor is the same three writes per PodIdentity (identity PUT, Reader role assignment PUT, federated credential PUT) made by a plain client with 4 PodIdentities in flight, the operator\'s default worker count, against the same emulator latency — the time an ideal controller with that concurrency would need. It is measured right before and right after the operator\'s run and the mean is the floor; the spread between the two shows how much other work on the machine moved wall time meanwhile.',
      'All Ready is taken from a watch on the namespace\'s PodIdentities (the moment the last one turned Ready), not from polling lists, which cost the API server a consistent read of every PodIdentity each time.',
      `The emulator's request log for each N (apply → all Ready) is in ${runs.map((r) => r.requestLogFile.split('/').pop()).join(', ')} beside this report.`,
      'The operator resyncs PodIdentities every 10 minutes, so in the steady-state window the allowance of at most one read per object per resync period is N reads; writes must be 0.',
    );
    if (nodeRun) {
      p3.tables.push({
        title: `Node mode: ${nodeRun.pods} pods on 10 nodes of ${nodeRun.scaleSets} scale sets, ${nodeRun.identities} PodIdentities (1 Reader role each), ARM latency ${opts.armLatencyMs} ms`,
        columns: ['All Ready (s)', 'Ready', 'Scale-set PATCHes', `Max PATCHes to one scale set in any ${nodeRun.windowMs / 1000} s`, `Max PATCHes (all scale sets) in any ${nodeRun.windowMs / 1000} s`, 'New pod: first token (s)', 'Detail'],
        rows: [[nodeRun.readyMs === null ? 'not Ready' : round(nodeRun.readyMs / 1000, 1), `${nodeRun.ready}/${nodeRun.identities}`, nodeRun.patches, nodeRun.maxPatchesPerScaleSetWindow, nodeRun.maxPatchesPerWindow, nodeRun.firstTokenMs === null ? '—' : round(nodeRun.firstTokenMs / 1000, 2), nodeRun.firstTokenDetail]],
      });
      p3.notes.push('Node mode first token: a new Node-mode PodIdentity and a pod selected by it are created on the agent\'s node (an instance of the first scale set); the time runs from the PodIdentity\'s creation until the agent answers 200 (the operator must create the identity, assign its role and PATCH the scale set; the agent then asks the node IMDS).');
    }
    p3.data = { runs, nodeMode: nodeRun };
    const biggest = runs[runs.length - 1];
    const at1000 = runs.find((r) => r.n === 1000);
    const target = `≤ ${FLOOR_RATIO_GOAL} × ARM floor`;
    // The other floor: the CPU the whole system spends per PodIdentity, spread over every core.
    const cores = cpus().length;
    const cpuFloorMs = (r: ConvergenceRun) => ((r.cpu.operator + r.cpu.apiServer + r.cpu.etcd + r.cpu.bench) * 1000) / cores;
    for (const r of runs) {
      const met = r.readyMs !== null && r.readyMs <= FLOOR_RATIO_GOAL * r.floorMs;
      const c = r.cpu;
      p3.notes.push(
        `N=${r.n}: converging took ${round(c.operator + c.apiServer + c.etcd + c.bench, 1)} CPU-seconds (operator ${round(c.operator, 1)}, kube-apiserver ${round(c.apiServer, 1)}, etcd ${round(c.etcd, 1)}, emulator + apply + watch ${round(c.bench, 1)}); on ${cores} cores that alone needs ≥ ${round(cpuFloorMs(r) / 1000, 1)} s = ${round(cpuFloorMs(r) / r.floorMs, 2)} × ARM floor, whatever the ARM latency` +
          (met
            ? '.'
            : `. ${round(cpuFloorMs(r) / r.floorMs, 2) > FLOOR_RATIO_GOAL ? 'That CPU floor is above the goal: removing' : 'Removing'} it means fewer API-server writes per PodIdentity (now the apply, a finalizer, a status and one Event, each also sent to every watcher) and less CPU per call in the operator; in a cluster the API server and etcd run on other machines and real ARM calls take ~10× the emulator's ${opts.armLatencyMs} ms, so the same CPU is a far smaller share of the time. Check the load averages beside the floor: a floor measured on a busy machine stays latency-bound while the operator's run is CPU-bound.`),
      );
    }
    if (at1000) goals.check('P3', '1,000 PodIdentities Ready', target, at1000.readyMs === null ? `${at1000.ready}/1000 Ready after ${opts.p3TimeoutMs / 1000} s` : `${round(at1000.readyMs / at1000.floorMs, 2)} × ARM floor (${round(at1000.readyMs / 1000, 1)} s vs ${round(at1000.floorMs / 1000, 1)} s; CPU floor on ${cores} cores ${round(cpuFloorMs(at1000) / at1000.floorMs, 2)} × ARM floor; operator CPU ${ms(at1000.cpu.operator, 1000)} ms per PodIdentity)`, at1000.readyMs !== null && at1000.readyMs <= FLOOR_RATIO_GOAL * at1000.floorMs);
    else goals.unmeasured('P3', '1,000 PodIdentities Ready', target, `N=1000 not in --p3-n (${opts.p3N.join(',')})${biggest ? `; N=${biggest.n}: ${sec(biggest.readyMs)} s, ${biggest.readyMs === null ? '—' : round(biggest.readyMs / biggest.floorMs, 2)} × floor` : ''}`);
    for (const r of runs) {
      const w = r.writes;
      const over = WRITE_ROUTES.filter((k) => w[k]!.total > r.n || w[k]!.total !== w[k]!.unique);
      goals.check('P3', `ARM writes per PodIdentity (N=${r.n})`, '≤ 1 identity PUT + 1 role PUT + 1 credential PUT, no duplicates', WRITE_ROUTES.map((k) => `${k} ${round(w[k]!.total / r.n, 3)}/PodIdentity (${w[k]!.total - w[k]!.unique} duplicate)`).join('; '), over.length === 0 && r.ready === r.n);
      goals.check('P3', `steady state (N=${r.n}, ${r.steady.windowMs / 1000} s window)`, 'no ARM writes, ≤ 1 read per object per resync period', `${r.steady.writes} writes, ${r.steady.reads} reads`, r.steady.writes === 0 && r.steady.reads <= r.n);
    }
    if (nodeRun) {
      goals.check('P3', 'Node mode: scale-set PATCHes', '≤ 2 per batch window (2 scale sets: ≤ 1 per scale set per window)', `max ${nodeRun.maxPatchesPerScaleSetWindow} to one scale set in any ${nodeRun.windowMs / 1000} s (${nodeRun.maxPatchesPerWindow} across both; ${nodeRun.patches} in total; ${nodeRun.ready}/${nodeRun.identities} Ready)`, nodeRun.maxPatchesPerScaleSetWindow <= 1 && nodeRun.ready === nodeRun.identities);
      goals.check('P3', 'Node mode: time to first token for a new pod', 'reported', nodeRun.firstTokenMs === null ? nodeRun.firstTokenDetail : `${round(nodeRun.firstTokenMs / 1000, 2)} s (${nodeRun.firstTokenDetail})`, nodeRun.firstTokenMs !== null && nodeRun.firstTokenDetail.startsWith('token for'));
    } else {
      goals.unmeasured('P3', 'Node mode: scale-set PATCHes', '≤ 2 per batch window', '--node-pods 0');
      goals.unmeasured('P3', 'Node mode: time to first token for a new pod', 'reported', '--node-pods 0');
    }
  }
  if (want.p5 && runs.length) {
    p5.tables.push({
      title: 'P3 time to all Ready as N grows',
      columns: ['N', 'All Ready (s)', 'ARM floor (s)', 'Ready / floor', 'ms per PodIdentity'],
      rows: runs.map((r) => [r.n, r.readyMs === null ? 'not Ready' : round(r.readyMs / 1000, 1), round(r.floorMs / 1000, 1), r.readyMs === null ? '—' : round(r.readyMs / r.floorMs, 2), r.readyMs === null ? '—' : round(r.readyMs / r.n, 1)]),
    });
    p5.data = { runs: runs.map((r) => ({ n: r.n, readyMs: r.readyMs, floorMs: r.floorMs })) };
    p5Chart = lineChartSvg('P3: time until all PodIdentities are Ready', 'N PodIdentities', 'seconds', [
      { name: 'operator', points: runs.filter((r) => r.readyMs !== null).map((r) => [r.n, r.readyMs! / 1000]) },
      { name: 'ARM floor', points: runs.map((r) => [r.n, r.floorMs / 1000]) },
    ]);
  }
  return { p3, p4, p5, ...(p5Chart ? { p5Chart } : {}) };
}
