/**
 * P6 (issue 14 §1): what a NEW connection costs, as CLIs and most SDK processes call IMDS (one request per
 * connection), with no other pods in the cluster and with many Pending pods on other nodes. Each new
 * connection is verified against the API server, so this is where a cost that grows with the cluster shows.
 */
import { randomUUID } from 'node:crypto';
import type { KubernetesListObject, V1Pod } from '@kubernetes/client-node';
import { apiRequest, getJson } from '../../lib/k8s/rest.js';
import type { AgentStage } from './agent-sections.js';
import { mapLimit, TOKEN_PATH } from './fixture.js';
import type { LoadResult, LoadSpec } from './loadgen.js';
import type { BenchOptions } from './options.js';
import { cpuSeconds, runLoadgen } from './processes.js';
import { mergeRuns } from './load-runs.js';
import { startVerifyFloor } from './agent.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { round, section, type GoalBook, type Section } from './report.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

type Log = (msg: string) => void;

export const P6_TITLE = 'New connections at cluster scale (one request per connection)';

/** A paced caller: one new connection every 20 ms, as a process that calls IMDS now and then. */
const LATENCY_INTERVAL_MS = 20;
/** Back-to-back new connections for throughput. */
const THROUGHPUT_CONCURRENCY = 16;
/**
 * Rounds of the paced series per point, each one A's series and one V's, in the order A V, V A, A V: three
 * times the connections (1,500 at full size, fifteen above the p99 rather than five), and a slow stretch of
 * the shared machine falls on both servers rather than on one.
 */
const LATENCY_ROUNDS = 3;
/** The control plane counts as quiet below this share of one core (kube-apiserver and etcd together), over a second, twice in a row. */
const QUIET_CORES = 0.15;
/** How long a series waits for that at most (the smoke run in `make test` shares the machine with other tests, so it waits briefly). */
const QUIET_DEADLINE_MS = { full: 120_000, smoke: 5_000 };

interface LatencyPoint {
  pods: number;
  /** Seconds the series waited for the control plane to be quiet before it began, and whether it was. */
  settled: { seconds: number; quiet: boolean };
  latency: LoadResult;
  /** V (the bare server plus only the guarantee's read) paced the same way, in rounds alternating with A's: the floor under `latency`. */
  floorLatency: LoadResult;
  /** API server reads (agent's pod_verify_reads_total) per answered connection in the latency run. */
  readsPerConnection: number;
}

interface Point extends LatencyPoint {
  throughput: { a: LoadResult; b: LoadResult; v: LoadResult; ratio: number; readsPerConnection: number; cpuMicros: { a: number; b: number; v: number } };
  /** One read of each kind from the bench, ms: the cost on the API server and etcd (GET: p50 and p99 too). */
  apiRead: { getPod: number; getPodP99: number; getSamples: number; listByIp: number };
}

async function verifyReads(stage: AgentStage): Promise<number> {
  const text = await (await fetch(`${stage.agent.metricsOrigin}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('podidentity_agent_pod_verify_reads_total{'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]! : 0;
}

/**
 * The API server's cost of the read the agent makes now (GET by name: `getSamples` of them, paced like the
 * latency series, so its p99 is the floor under the agent's new-connection p99) and of the one it made
 * before (LIST by IP, `listSamples`).
 */
async function apiReadCost(stage: AgentStage, getSamples: number, listSamples: number): Promise<Point['apiRead']> {
  const { kc } = stage.env;
  const pod = stage.loadPod;
  const time = async (n: number, paceMs: number, fn: () => Promise<unknown>) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await fn();
      const took = performance.now() - t0;
      out.push(took);
      if (paceMs > took) await new Promise((r) => setTimeout(r, paceMs - took));
    }
    return out;
  };
  const api = kubeConfigApiServer(kc);
  const gets = await time(getSamples, LATENCY_INTERVAL_MS, () => getJson<V1Pod>(api, `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}`, {}));
  const lists = await time(listSamples, 0, () => getJson<KubernetesListObject<V1Pod>>(api, '/api/v1/pods', { fieldSelector: `status.podIP=${pod.ip},spec.nodeName=bench-node-0` }));
  return { getPod: round(percentile(gets, 50), 2), getPodP99: round(percentile(gets, 99), 2), getSamples, listByIp: round(percentile(lists, 50), 2) };
}

/** Requests of a run that did not get a 200 (answered otherwise, or not at all). */
const failed = (r: LoadResult) => r.requests - (r.statuses['200'] ?? 0) + r.errors;

function newConnections(stage: AgentStage, opts: BenchOptions): LoadSpec {
  return { origin: stage.agent.origin, path: TOKEN_PATH, headers: { Metadata: 'true' }, concurrency: 1, durationMs: opts.durationMs, warmupMs: opts.warmupMs, localAddresses: [stage.loadPod.ip], newConnectionPerRequest: true };
}

/**
 * Waits until kube-apiserver and etcd together use less than QUIET_CORES of a core for two one-second windows
 * in a row: creating or deleting the crowd leaves them busy for a while (etcd's writes, the API server's
 * watch cache and its collections), and a cluster that holds 10,000 pods is not one that created them a moment
 * ago. Past the deadline the series runs anyway and the report says it did not settle.
 */
async function controlPlaneQuiet(stage: AgentStage, deadlineMs: number): Promise<LatencyPoint['settled']> {
  const pids = () => [stage.env.apiServerPid(), stage.env.cp.pids.etcd];
  const cpu = () => pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const t0 = performance.now();
  let quietWindows = 0;
  while (quietWindows < 2) {
    if (performance.now() - t0 > deadlineMs) return { seconds: round((performance.now() - t0) / 1000, 1), quiet: false };
    const c0 = cpu();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const cores = (cpu() - c0) / ((performance.now() - w0) / 1000);
    quietWindows = cores < QUIET_CORES ? quietWindows + 1 : 0;
  }
  return { seconds: round((performance.now() - t0) / 1000, 1), quiet: true };
}

/**
 * The paced series: one new connection every LATENCY_INTERVAL_MS from one pod, in LATENCY_ROUNDS rounds of
 * the agent's series and V's (A V, V A, A V), once the control plane is quiet.
 */
async function measureLatency(stage: AgentStage, floor: FloorServer, opts: BenchOptions, pods: number, log: Log): Promise<LatencyPoint> {
  const settled = await controlPlaneQuiet(stage, opts.smoke ? QUIET_DEADLINE_MS.smoke : QUIET_DEADLINE_MS.full);
  log(`P6: ${pods} other pods: control plane ${settled.quiet ? 'quiet' : 'still busy'} after ${settled.seconds} s; paced new-connection latency, agent A and floor V in ${LATENCY_ROUNDS} rounds`);
  const rounds = opts.smoke ? 1 : LATENCY_ROUNDS;
  const agentRuns: LoadResult[] = [];
  const floorRuns: LoadResult[] = [];
  let reads = 0;
  const runAgent = async () => {
    const before = await verifyReads(stage);
    agentRuns.push(await runLoadgen({ ...newConnections(stage, opts), intervalMs: LATENCY_INTERVAL_MS }));
    reads += (await verifyReads(stage)) - before;
  };
  const runFloor = async () => {
    floorRuns.push(await runLoadgen({ ...newConnections(stage, opts), origin: floor.origin, intervalMs: LATENCY_INTERVAL_MS }));
  };
  for (let i = 0; i < rounds; i++) {
    for (const run of i % 2 === 0 ? [runAgent, runFloor] : [runFloor, runAgent]) await run();
  }
  const latency = mergeRuns(agentRuns);
  const floorLatency = mergeRuns(floorRuns);
  const readsPerConnection = latency.answered ? reads / latency.answered : 0;
  return { pods, settled, latency, floorLatency, readsPerConnection: round(readsPerConnection, 3) };
}

async function measure(stage: AgentStage, floor: FloorServer, opts: BenchOptions, pods: number, log: Log): Promise<Point> {
  const base = newConnections(stage, opts);
  const paced = await measureLatency(stage, floor, opts, pods, log);
  log(`P6: ${pods} other pods: back-to-back new connections, baseline B, floor V, then agent A`);
  const cpu = async (pid: number, run: () => Promise<LoadResult>) => {
    const c0 = cpuSeconds(pid);
    const result = await run();
    return { result, micros: result.answered ? round(((cpuSeconds(pid) - c0) * 1e6) / result.answered, 1) : 0 };
  };
  const b = await cpu(stage.baseline.proc.pid, () => runLoadgen({ ...base, origin: stage.baseline.origin, concurrency: THROUGHPUT_CONCURRENCY }));
  const v = await cpu(floor.proc.pid, () => runLoadgen({ ...base, origin: floor.origin, concurrency: THROUGHPUT_CONCURRENCY }));
  const before = await verifyReads(stage);
  const a = await cpu(stage.agent.pid(), () => runLoadgen({ ...base, concurrency: THROUGHPUT_CONCURRENCY }));
  const tpReads = a.result.answered ? (await verifyReads(stage) - before) / a.result.answered : 0;
  const apiRead = await apiReadCost(stage, opts.smoke ? 3 : 250, opts.smoke ? 3 : 20);
  return {
    ...paced,
    throughput: { a: a.result, b: b.result, v: v.result, ratio: b.result.rps > 0 ? a.result.rps / b.result.rps : 0, readsPerConnection: round(tpReads, 3), cpuMicros: { a: a.micros, b: b.micros, v: v.micros } },
    apiRead,
  };
}

/** POST of raw JSON over the keep-alive pool: creating thousands of pods through client-node's serializer costs the bench more CPU than the API server. */
async function postJson(stage: AgentStage, path: string, body: unknown): Promise<void> {
  const bytes = Buffer.from(JSON.stringify(body));
  const { url, transport, options } = await apiRequest(kubeConfigApiServer(stage.env.kc), 'POST', path, {}, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  await new Promise<void>((resolve, reject) => {
    const req = transport.request(url, options, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => ((res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`POST ${path}: ${res.statusCode} ${text.slice(0, 300)}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(bytes);
  });
}

/** `count` Pending pods spread over 100 other nodes: nothing the agent watches, everything a LIST would scan. */
async function createCrowd(stage: AgentStage, count: number, log: Log): Promise<{ namespace: string; seconds: number }> {
  const { core } = stage.env;
  const namespace = `bench-crowd-${randomUUID().slice(0, 6)}`;
  await core.createNamespace({ body: { metadata: { name: namespace, labels: { 'podidentity.dev/bench': 'true' } } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'default' } } });
  const t0 = performance.now();
  let done = 0;
  await mapLimit(Array.from({ length: count }, (_, i) => i), 32, async (i) => {
    await postJson(stage, `/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `crowd-${i}`, labels: { app: 'crowd' } },
      spec: { nodeName: `crowd-node-${i % 100}`, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    });
    if (++done % 2000 === 0) log(`P6: ${done} of ${count} crowd pods`);
  });
  return { namespace, seconds: round((performance.now() - t0) / 1000, 1) };
}

/**
 * Deletes the crowd so later sections see the cluster as before. The pods are on no real node, so they go at
 * once; a deletecollection of thousands can outlive the API server's request timeout (504) while it keeps
 * deleting, so it is repeated until a list comes back empty.
 */
async function removeCrowd(stage: AgentStage, namespace: string, log: Log): Promise<void> {
  const remaining = async () => (await getJson<KubernetesListObject<V1Pod>>(kubeConfigApiServer(stage.env.kc), `/api/v1/namespaces/${namespace}/pods`, { limit: 1 })).items.length;
  await waitFor('the crowd of pods removed', async () => {
    await stage.env.core.deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 }).catch((err: Error) => log(`P6: removing the crowd: ${err.message.split('\n')[0]}; again`));
    return (await remaining()) === 0;
  }, { timeoutMs: 600_000, intervalMs: 1000 });
}

type FloorServer = Awaited<ReturnType<typeof startVerifyFloor>>;

export async function runP6(stage: AgentStage, opts: BenchOptions, goals: GoalBook, log: Log): Promise<Section> {
  const s = section('P6', P6_TITLE);
  const floor = await startVerifyFloor(stage.env, await freePort(), stage.bodyFile);
  let empty: Point;
  let crowded: Point;
  let emptyAfter: LatencyPoint;
  let crowd: { namespace: string; seconds: number };
  try {
    empty = await measure(stage, floor, opts, 0, log);
    log(`P6: creating ${opts.crowdPods} Pending pods on other nodes`);
    crowd = await createCrowd(stage, opts.crowdPods, log);
    try {
      crowded = await measure(stage, floor, opts, opts.crowdPods, log);
    } finally {
      await removeCrowd(stage, crowd.namespace, log);
    }
    emptyAfter = await measureLatency(stage, floor, opts, 0, log);
  } finally {
    await floor.proc.stop();
  }
  const points = [empty, crowded];
  const latencyPoints: [string, LatencyPoint][] = [['0 (before the crowd)', empty], [String(opts.crowdPods), crowded], ['0 (after the crowd)', emptyAfter]];
  const l = (p: LatencyPoint) => p.latency.latency;
  s.tables.push({
    title: `New-connection cached token, one connection every ${LATENCY_INTERVAL_MS} ms from one pod, ${opts.smoke ? 1 : LATENCY_ROUNDS} round(s) of ${opts.durationMs / 1000} s (after ${opts.warmupMs / 1000} s warm-up) for A and for V, alternating; ms`,
    columns: ['Other pods in the cluster', 'Control plane quiet after (s)', 'Connections', 'p50', 'p90', 'p99', 'max', 'API-server reads per connection', 'non-200', 'V (floor) p50', 'V p99', 'V non-200'],
    rows: latencyPoints.map(([label, p]) => [label, p.settled.quiet ? p.settled.seconds : `not quiet in ${p.settled.seconds}`, p.latency.requests, l(p).p50, l(p).p90, l(p).p99, l(p).max, p.readsPerConnection, failed(p.latency), p.floorLatency.latency.p50, p.floorLatency.latency.p99, failed(p.floorLatency)]),
  });
  s.tables.push({
    title: `Throughput with one request per connection, ${THROUGHPUT_CONCURRENCY} clients back to back (A: agent; B: bare Node http server; V: B plus only the agent's attribution, the guarantee's floor; all one request per connection)`,
    columns: ['Other pods', 'A conn/s', 'B conn/s', 'V conn/s', 'A/B', 'V/B (floor)', 'A/V', 'A p50', 'A p99', 'V p50', 'B p99', 'A CPU µs/conn', 'V CPU µs/conn', 'B CPU µs/conn', 'API-server reads per connection (A)', 'non-200 (A / V)'],
    rows: points.map((p) => {
      const t = p.throughput;
      return [p.pods, Math.round(t.a.rps), Math.round(t.b.rps), Math.round(t.v.rps), round(t.ratio, 3), round(t.v.rps / t.b.rps, 3), round(t.a.rps / t.v.rps, 3), t.a.latency.p50, t.a.latency.p99, t.v.latency.p50, t.b.latency.p99, t.cpuMicros.a, t.cpuMicros.v, t.cpuMicros.b, t.readsPerConnection, `${failed(t.a)} / ${failed(t.v)}`];
    }),
  });
  s.tables.push({
    title: `One verification read as the API server answers it, from the bench process (ms; GET: ${points[0]?.apiRead.getSamples ?? 0} reads, one every ${LATENCY_INTERVAL_MS} ms like the latency series)`,
    columns: ['Other pods', 'GET one pod by name (the agent now), p50', 'GET p99: the floor under the agent\'s new-connection p99', 'LIST pods by status.podIP field selector (the agent before), median'],
    rows: points.map((p) => [p.pods, p.apiRead.getPod, p.apiRead.getPodP99, p.apiRead.listByIp]),
  });
  s.notes.push(
    `The crowd: ${opts.crowdPods} Pending pods (no status) in one namespace, spread over 100 nodes that are not the agent's, created 32 at a time in ${crowd.seconds} s and deleted with one deletecollection after the measurement.`,
    'Each new connection is verified by a GET of the one pod its address belongs to (a consistent read of one etcd key) that started after the connection opened; reads are shared by every connection of that pod opened before the read started, so back-to-back connections cost less than one read each. A LIST with a field selector, what the agent did before, reads every pod in the cluster from etcd.',
    'V (dev/bench/verify-floor-server.ts) is B plus exactly what keeps the guarantee that a pod deleted a moment ago never hands its identity to the next holder of its address: the agent\'s own Attributor and pod directory, started like the agent (in-cluster, the image\'s node flags). It answers B\'s body once a connection is confirmed, with no selection, cache, metrics or audit. Each connection waits for an API-server round trip that started after its accept (shared with the connections accepted before that read began), so with 16 clients back to back V is bound by that round trip, not by CPU: V/B is the floor the guarantee puts under A/B on this machine, and A/V is what the rest of the agent costs.',
    'CPU µs per connection is the stable form of the throughput goal on a shared machine (throughput also depends on when the scheduler runs each process). In a CPU profile of the agent under this load, most of its extra CPU per connection over B is the verification read itself (writing the TLS request, whose loopback delivery to the API server is charged to the writer, and parsing the pod), the rest the same request path P1 measures with keep-alive; fewer reads per connection (more connections per shared read) is what moves it.',
    `Each latency series starts once kube-apiserver and etcd together use under ${QUIET_CORES} of a core for two seconds in a row (the second column): creating or deleting ${opts.crowdPods} pods keeps them busy for a while after, and the figure sought is what a cluster that holds them costs, not one that is still writing them.`,
    `The latency series is paced (one connection every ${LATENCY_INTERVAL_MS} ms, like a CLI or a short-lived process), below the default verification budget of 100 reads per second per source address; the throughput series is back to back and may meet that budget, which the reads-per-connection column shows.`,
  );
  s.data = { points, emptyAfter, crowd };
  const ratio = (a: number, b: number) => (b > 0 ? a / b : a > 0 ? Infinity : 1);
  // The 0-pod series runs minutes before and after the crowded one; their mean is the baseline, as P3's ARM
  // floor is, so what else the shared machine did meanwhile moves both sides of the ratio alike.
  const emptyP50 = round((l(empty).p50 + l(emptyAfter).p50) / 2, 3);
  const emptyP99 = round((l(empty).p99 + l(emptyAfter).p99) / 2, 3);
  const p50r = ratio(l(crowded).p50, emptyP50);
  const p99r = ratio(l(crowded).p99, emptyP99);
  const ok = (p: LatencyPoint) => (p.latency.statuses['200'] ?? 0) === p.latency.requests && p.latency.requests > 0;
  const allOk = latencyPoints.every(([, p]) => ok(p));
  const n = opts.crowdPods.toLocaleString('en-US');
  const emptyBoth = (f: 'p50' | 'p99') => `0 pods: ${f === 'p50' ? emptyP50 : emptyP99} ms, the mean of ${l(empty)[f]} before and ${l(emptyAfter)[f]} after`;
  goals.check('P6', `new-connection p50, ${n} pods / 0 pods`, '≤ 1.2×', `${round(p50r, 2)}× (${l(crowded).p50} ms; ${emptyBoth('p50')})${allOk ? '' : '; some requests failed'}`, allOk && p50r <= 1.2);
  goals.check('P6', `new-connection p99, ${n} pods / 0 pods`, '≤ 1.2×', `${round(p99r, 2)}× (${l(crowded).p99} ms; ${emptyBoth('p99')})`, allOk && p99r <= 1.2);
  goals.check('P6', `new-connection p99 with ${n} pods`, '≤ 5 ms', `${l(crowded).p99} ms (floor: V, the bare server plus only the guarantee's read, paced the same way in alternating rounds, p99 ${crowded.floorLatency.latency.p99} ms; one GET of a pod from the bench, p99 ${crowded.apiRead.getPodP99} ms, p50 ${crowded.apiRead.getPod} ms)`, allOk && l(crowded).p99 <= 5);
  goals.check('P6', 'API-server requests per new connection', '≤ 1, the same at any cluster size', `${empty.readsPerConnection} with 0 pods, ${crowded.readsPerConnection} with ${n}, ${emptyAfter.readsPerConnection} with 0 again (back to back: ${empty.throughput.readsPerConnection} / ${crowded.throughput.readsPerConnection})`, latencyPoints.every(([, p]) => p.readsPerConnection <= 1));
  const t = crowded.throughput;
  goals.check('P6', `throughput, one request per connection, with ${n} pods`, '≥ 0.75 × B', `${round(t.ratio, 3)} × B (${Math.round(t.a.rps)} vs ${Math.round(t.b.rps)} conn/s; CPU ${t.cpuMicros.a} vs ${t.cpuMicros.b} µs/conn; floor: B plus the guarantee alone (V) ${round(t.v.rps / t.b.rps, 3)} × B, the agent ${round(t.a.rps / t.v.rps, 3)} × V)`, t.ratio >= 0.75);
  return s;
}
