/**
 * The agent's sections: P1 (cached throughput and latency against a bare Node server), P2 (miss overhead
 * and single-flight), the agent half of P4 (RSS at scale) and the agent half of P5 (P1 latency as the
 * caches grow).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { freePort, freePorts } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { rawRequest, claimsOf } from '../azure-emulator/test-fixture.js';
import { agentEnv, agentNodeFlags, startAgentProcess, startVerifyFloor, type AgentProcess } from './agent.js';
import { compiled } from './build.js';
import { BenchObjects, mapLimit, podAddress, TOKEN_PATH, type BenchEnv, type BoundPod } from './fixture.js';
import type { LoadResult } from './loadgen.js';
import { mergeRuns } from './load-runs.js';
import { dumpProcessMemory, holdWhileFileExists } from './memory-dump.js';
import type { MissResult, ProbeSpec, SingleFlightResult } from './miss-probe.js';
import type { BenchOptions } from './options.js';
import { cpuSeconds, importRss, mainThreadCpuSeconds, rssBytes, rssParts, runJsonScript, runLoadgen, startBaseline, type BaselineServer } from './processes.js';
import { round, section, type GoalBook, type Section } from './report.js';

export interface AgentStage {
  env: BenchEnv;
  objects: BenchObjects;
  agent: AgentProcess;
  baseline: BaselineServer;
  /** The pod P1 loads from, and its namespace (where P4 adds more PodIdentities). */
  loadPod: BoundPod;
  /** Every pod bound on the agent's node, by address. */
  pods: BoundPod[];
  tokenBytes: number;
  /** The agent's token answer for `loadPod`, which the baselines answer byte for byte. */
  bodyFile: string;
  /** P1's c=16 results, the first point of P5. */
  p1At16?: { a: LoadResult; b: LoadResult };
  stop(): Promise<void>;
}


/** The agent's listen and metrics ports: distinct (the agent refuses equal ones). */
async function agentPorts(): Promise<{ listen: number; metrics: number }> {
  const [listen, metrics] = await freePorts(2);
  return { listen: listen!, metrics: metrics! };
}
type Log = (msg: string) => void;

/** How long P4 leaves the agent without requests before its at-rest reading: longer than the reducer's six quiet 5 s looks in a row, and its 15 s between collections. */
const AGENT_REST_MS = 45_000;

async function getToken(agent: AgentProcess, ip: string, path = TOKEN_PATH) {
  return rawRequest(`${agent.origin}${path}`, { headers: { Metadata: 'true' }, localAddress: ip });
}

/** Checks the token an address gets names that pod's identity. */
function tokenMatches(json: unknown, pod: BoundPod): boolean {
  const token = (json as { access_token?: string } | undefined)?.access_token;
  if (!token) return false;
  const claims = claimsOf(token);
  return claims['oid'] === pod.identity.principalId && claims['appid'] === pod.identity.clientId;
}

export async function setupAgentStage(env: BenchEnv, log: Log): Promise<AgentStage> {
  const objects = new BenchObjects(env);
  const ns = await objects.namespace('bench-agent');
  await objects.serviceAccount(ns, 'app');
  const loadPod = await objects.boundPod(ns, 'load-0', podAddress(0), 'app');
  log('starting the agent (loopback, no iptables)');
  const agent = await startAgentProcess(env, await agentPorts());
  // The first request is a miss (TokenRequest + federated exchange); from then on the cache is warm.
  let last = '';
  const first = await waitFor('first token from the agent', async () => {
    const res = await getToken(agent, loadPod.ip);
    last = `${res.status} ${res.text.slice(0, 500)}`;
    return res.status === 200 ? res : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200 }).catch((err: Error) => {
    throw new Error(`${err.message}; last answer: ${last}`);
  });
  if (!tokenMatches(first.json, loadPod)) throw new Error(`the agent issued a token for another identity: ${first.text.slice(0, 200)}`);
  const bodyFile = join(env.dir, 'token-response.json');
  writeFileSync(bodyFile, first.text);
  const baseline = await startBaseline(await freePort(), bodyFile, env.dir);
  return {
    env,
    objects,
    agent,
    baseline,
    loadPod,
    pods: [loadPod],
    bodyFile,
    tokenBytes: Buffer.byteLength(first.text),
    async stop() {
      await agent.stop();
      await baseline.proc.stop();
    },
  };
}

function loadSpec(opts: BenchOptions, origin: string, concurrency: number, ip: string) {
  return { origin, path: TOKEN_PATH, headers: { Metadata: 'true' }, concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs, localAddresses: [ip] };
}

const fmt = (r: LoadResult) => [Math.round(r.rps), r.latency.p50, r.latency.p99, r.latency.p999];
const non200 = (r: LoadResult) => r.errors + Object.entries(r.statuses).filter(([s]) => s !== '200').reduce((a, [, n]) => a + n, 0);

export async function runP1(stage: AgentStage, opts: BenchOptions, goals: GoalBook, log: Log): Promise<Section> {
  const s = section('P1', 'Cached token throughput and latency (agent A vs bare Node http B)');
  const rows: (string | number)[][] = [];
  const points: { concurrency: number; a: LoadResult; b: LoadResult; v: LoadResult; ratio: number; cpuMicrosPerRequest: { a: number; b: number; v: number } }[] = [];
  // Server CPU per answered request: the same ratio with the scheduler's noise (who ran when) taken out.
  // Only within one run, though: a burst of other work on the shared 2 cores also raises a server's CPU per
  // request (fewer requests per wakeup, colder caches), and with B then A once each, a burst during one of
  // them alone moved the ratio by 0.3–0.5 between runs of the same code. So each point is B A V V A B, each
  // run half the duration: a burst, or a drift over the point, falls on every server alike.
  const runs = async (pid: number, results: LoadResult[], cpu: { seconds: number }, c: number, origin: string) => {
    const [before, mainBefore] = [cpuSeconds(pid), mainThreadCpuSeconds(pid)];
    const r = await runLoadgen({ ...loadSpec(opts, origin, c, stage.loadPod.ip), durationMs: Math.ceil(opts.durationMs / 2) });
    const seconds = cpuSeconds(pid) - before;
    const mainSeconds = mainThreadCpuSeconds(pid) - mainBefore;
    results.push(r);
    cpu.seconds += seconds;
    const perRequest = (x: number) => round((x * 1e6) / Math.max(1, r.answered), 1);
    log(`P1: concurrency ${c}: ${Math.round(r.rps)} req/s, ${perRequest(seconds)} CPU µs/req (main thread ${perRequest(mainSeconds)}, helper threads ${perRequest(seconds - mainSeconds)})`);
  };
  const micros = (cpu: { seconds: number }, r: LoadResult) => (r.answered > 0 ? round((cpu.seconds * 1e6) / r.answered, 1) : 0);
  // V, B plus only the agent's attribution, measured in the same point: what the guarantee alone costs per request.
  const floor = await startVerifyFloor(stage.env, await freePort(), stage.bodyFile);
  const server = { A: { pid: stage.agent.pid(), origin: stage.agent.origin, name: 'agent A' }, B: { pid: stage.baseline.proc.pid, origin: stage.baseline.origin, name: 'baseline B' }, V: { pid: floor.proc.pid, origin: floor.origin, name: 'floor V' } };
  try {
    for (const c of opts.concurrency) {
      const runsOf = { A: [] as LoadResult[], B: [] as LoadResult[], V: [] as LoadResult[] };
      const cpuOf = { A: { seconds: 0 }, B: { seconds: 0 }, V: { seconds: 0 } };
      for (const who of ['B', 'A', 'V', 'V', 'A', 'B'] as const) {
        log(`P1: concurrency ${c}: ${server[who].name}`);
        await runs(server[who].pid, runsOf[who], cpuOf[who], c, server[who].origin);
      }
      const [a, b, v] = [mergeRuns(runsOf.A), mergeRuns(runsOf.B), mergeRuns(runsOf.V)];
      const [aCpu, bCpu, vCpu] = [micros(cpuOf.A, a), micros(cpuOf.B, b), micros(cpuOf.V, v)];
      const ratio = b.rps > 0 ? a.rps / b.rps : 0;
      const perB = (x: number) => (bCpu > 0 ? round(x / bCpu, 2) : '—');
      points.push({ concurrency: c, a, b, v, ratio, cpuMicrosPerRequest: { a: aCpu, b: bCpu, v: vCpu } });
      rows.push([c, ...fmt(a), ...fmt(b), round(ratio, 3), round(b.latency.p99 > 0 ? a.latency.p99 / b.latency.p99 : 0, 2), aCpu, bCpu, perB(aCpu), vCpu, perB(vCpu), `${non200(a)} / ${non200(b)} / ${non200(v)}`]);
      if (c === 16) stage.p1At16 = { a, b };
    }
  } finally {
    await floor.proc.stop();
  }
  s.tables.push({
    title: `${opts.durationMs / 1000} s per point and server, in two runs of ${opts.durationMs / 2000} s (B A V V A B), each after ${opts.warmupMs / 1000} s warm-up; latency in ms; keep-alive; one connection per concurrent client`,
    columns: ['Concurrency', 'A req/s', 'A p50', 'A p99', 'A p999', 'B req/s', 'B p50', 'B p99', 'B p999', 'A/B req/s', 'A/B p99', 'A CPU µs/req', 'B CPU µs/req', 'A/B CPU per req', 'V CPU µs/req', 'V/B CPU per req (the floor)', 'non-200 or failed (A / B / V)'],
    rows,
  });
  s.notes.push(
    `A: the agent (agent/main.ts, --manage-iptables=false, default log level info, so every decision reaches the audit log as in production: the first of each kind at once, repeats within 10 s as one counted line) on 127.0.0.1; every request comes from the bound pod's address ${stage.loadPod.ip}, so attribution, identity selection and authorisation run on each request before the warm cache answers. Each load connection is verified against the API server once, on its first request.`,
    'CPU µs/req: the server process\'s user + system CPU time (/proc/<pid>/stat) over its two load runs, warm-ups included, divided by the requests it answered in them. Throughput on 2 shared cores also depends on when the scheduler runs the server; CPU per request much less, so it shows how much of a throughput gap is the server\'s own work. The runs alternate B A V V A B, so other work on the machine weighs on every server alike.',
    'V: B plus exactly the agent\'s attribution (dev/bench/verify-floor-server.ts, as in P6: the agent\'s own Attributor and pod directory, started like the agent), answering B\'s body once the request\'s connection is confirmed. Each load connection is confirmed by one consistent read of its pod from the API server, as the agent\'s are, and every request is attributed by its socket; no selection, cache, metrics or audit. V/B is what keeping the guarantee costs a Node server per request on this machine; A/V the rest of the agent.',
    `B: a bare Node http server answering the agent's own token response (${stage.tokenBytes} bytes) byte for byte. Both run as plain \`node\` child processes from JavaScript compiled at the start of the run (as production runs dist/agent/main.js); the load comes from a separate undici process (dev/bench/loadgen.ts) on the same 2-core machine, so at high concurrency the load generator competes with the server for CPU.`,
  );
  s.data = { tokenResponseBytes: stage.tokenBytes, points };
  // The goal is CPU per request (issue 14: the same bar as 0.75× throughput, and the form of it that does not
  // move with how the scheduler shares 2 cores with the load generator); throughput is reported beside it.
  for (const p of points) {
    const cpuRatio = p.cpuMicrosPerRequest.b > 0 ? p.cpuMicrosPerRequest.a / p.cpuMicrosPerRequest.b : Infinity;
    goals.check(
      'P1',
      `CPU per request at concurrency ${p.concurrency}`,
      '≤ 1.33 × B',
      `${round(cpuRatio, 2)} × B (${p.cpuMicrosPerRequest.a} vs ${p.cpuMicrosPerRequest.b} µs; throughput ${round(p.ratio, 3)} × B, ${Math.round(p.a.rps)} vs ${Math.round(p.b.rps)} req/s; V, B plus only the attribution: ${p.cpuMicrosPerRequest.b > 0 ? round(p.cpuMicrosPerRequest.v / p.cpuMicrosPerRequest.b, 2) : '—'} × B)`,
      cpuRatio <= 1.33,
    );
  }
  const at16 = points.find((p) => p.concurrency === 16);
  if (at16) goals.check('P1', 'p99 at concurrency 16', '≤ 2 ms', `${at16.a.latency.p99} ms (B: ${at16.b.latency.p99} ms)`, at16.a.latency.p99 <= 2);
  else goals.unmeasured('P1', 'p99 at concurrency 16', '≤ 2 ms', 'concurrency 16 not in --concurrency');
  return s;
}

/** Cumulative counts of one histogram's buckets (`le` in seconds → count) for one label set, from /metrics. */
async function histogramBuckets(agent: AgentProcess, name: string, labels: string): Promise<Map<number, number>> {
  const text = await (await fetch(`${agent.metricsOrigin}/metrics`)).text();
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`) || !line.includes(labels)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le) out.set(le === '+Inf' ? Infinity : Number(le), Number(line.split(' ').pop()));
  }
  return out;
}

interface BucketSummary {
  count: number;
  /** The smallest bucket bound (ms) at or under which at least 50 % / 99 % of the observations fall. */
  p50AtMostMs: number;
  p99AtMostMs: number;
  /** Share of observations at or under `goalMs`. */
  shareUnderGoal: number;
}

/** What the agent's own histogram says about the observations made between `before` and `after`. */
function bucketSummary(before: Map<number, number>, after: Map<number, number>, goalMs: number): BucketSummary {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = (le: number) => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const count = delta(Infinity);
  const at = (q: number) => {
    const le = bounds.find((b) => delta(b) >= q * count) ?? Infinity;
    return le === Infinity ? Infinity : round(le * 1000, 3);
  };
  const goalBound = bounds.find((b) => Math.abs(b * 1000 - goalMs) < 1e-9);
  return { count, p50AtMostMs: at(0.5), p99AtMostMs: at(0.99), shareUnderGoal: count > 0 && goalBound !== undefined ? delta(goalBound) / count : 0 };
}

/** P2's goal on the agent's own time per miss, and the histogram bucket that decides it exactly. */
const MISS_OVERHEAD_GOAL_MS = 2;

export async function runP2(stage: AgentStage, opts: BenchOptions, goals: GoalBook, log: Log): Promise<Section> {
  const s = section('P2', 'Cache-miss overhead and single-flight');
  const { env, loadPod } = stage;
  const emu = env.fx.emu;
  // Its own agent, with the per-identity caps out of the way: 200 misses for one identity are far past the
  // production caps (20 resources, 60 exchanges per 10 min), which would answer most of them 429.
  log('P2: starting an agent with the per-identity issuance caps raised');
  const agent = await startAgentProcess(env, await agentPorts(), 'info', {
    name: 'agent-p2',
    extraArgs: ['--max-resources-per-identity=1000000', '--max-exchanges-per-identity=1000000'],
  });
  const rule = emu.faults.set({ match: { route: 'aad.token' }, latencyMs: opts.aadLatencyMs });
  const prefix = `p2-${Date.now().toString(36)}`;
  const base: Omit<ProbeSpec, 'mode' | 'samples' | 'concurrency'> = {
    agentOrigin: agent.origin,
    podIp: loadPod.ip,
    prefix,
    kube: { server: env.cp.server, token: env.cp.token, caPem: env.cp.caPem },
    aad: { authorityHost: emu.authorityHost, tenantId: emu.tenantId, clientId: loadPod.identity.clientId, caPem: emu.caPem },
    pod: { namespace: loadPod.namespace, serviceAccount: loadPod.serviceAccount, name: loadPod.name, uid: loadPod.uid },
  };
  const overheadSeries = ['podidentity_agent_miss_overhead_seconds', 'mode="Federated"'] as const;
  try {
    log(`P2: ${opts.misses} cache misses with Azure AD at ${opts.aadLatencyMs} ms`);
    const before = await histogramBuckets(agent, ...overheadSeries);
    const cpuBefore = cpuSeconds(agent.pid());
    const misses = await runJsonScript<MissResult>('miss-probe', 'dev/bench/miss-probe.ts', { ...base, mode: 'misses', samples: opts.misses, concurrency: 1 });
    const cpuPerMissMs = round(((cpuSeconds(agent.pid()) - cpuBefore) * 1000) / (opts.misses + misses.discarded), 3);
    const own = bucketSummary(before, await histogramBuckets(agent, ...overheadSeries), MISS_OVERHEAD_GOAL_MS);
    log(`P2: ${opts.singleFlight} concurrent first requests`);
    const aadBefore = emu.requests.count('aad.token');
    const sf = await runJsonScript<SingleFlightResult>('miss-probe', 'dev/bench/miss-probe.ts', { ...base, mode: 'single-flight', samples: 0, concurrency: opts.singleFlight });
    const upstream = emu.requests.count('aad.token') - aadBefore;

    const ms = (v: number) => (v === Infinity ? `> 100` : `≤ ${v}`);
    s.tables.push({
      title: `The agent's own time per miss, measured by the agent (podidentity_agent_miss_overhead_seconds{mode="Federated"}: each miss's duration minus its TokenRequest and Azure AD round trips), over the ${opts.misses} misses below and the probe's warm-up rounds; ms`,
      columns: ['Misses observed', 'p50', 'p99', `share ≤ ${MISS_OVERHEAD_GOAL_MS} ms`, 'agent CPU per miss (mean, ms)'],
      rows: [[own.count, ms(own.p50AtMostMs), ms(own.p99AtMostMs), `${round(own.shareUnderGoal * 100, 1)} %`, cpuPerMissMs]],
    });
    const row = (name: string, l: MissResult['agent']) => [name, l.p50, l.p90, l.p99, l.p999, l.max, l.mean];
    s.tables.push({
      title: `${opts.misses} sequential misses (after ${misses.discarded} discarded warm-up rounds); Azure AD token endpoint latency fixed at ${opts.aadLatencyMs} ms; ms`,
      columns: ['Series', 'p50', 'p90', 'p99', 'p999', 'max', 'mean'],
      rows: [row('agent miss (A)', misses.agent), row('direct upstream: TokenRequest + token exchange (baseline)', misses.direct), row('difference per round: A − baseline (context)', misses.overhead)],
    });
    s.tables.push({
      title: 'Single-flight',
      columns: ['Concurrent first requests', 'Statuses', 'Failed', 'Azure AD token calls', 'Wall time (ms)'],
      rows: [[opts.singleFlight, JSON.stringify(sf.statuses), sf.errors, upstream, sf.wallMs]],
    });
    s.notes.push(
      `The goal is read from the agent's own histogram: on every miss it answers with a new token, the agent times the request from its arrival to its answer and subtracts the time it spent waiting on the upstream round trips of that miss (the TokenRequest to the API server and the Azure AD exchange, msal-node's call as a whole), so machine noise in the upstreams does not enter it (the agent's own time can still include moments it waited for a core on a busy machine; the CPU column is the agent process's user + system CPU over the run divided by the misses, everything it did for them including its TLS and msal-node work, which no scheduler delay moves). The percentiles are bucket bounds (p99 ≤ the smallest bucket holding 99 % of the misses); a bucket ends at exactly ${MISS_OVERHEAD_GOAL_MS} ms, so "met" is exact: at least 99 % of the misses at or under it.`,
      'The second table is the older, indirect method for context: the probe interleaves the same two upstream calls made by a plain keep-alive client with the agent misses, round by round; the difference of two noisy series has a spread far larger than the overhead itself.',
      `This section runs its own agent (same flags, with --max-resources-per-identity and --max-exchanges-per-identity raised so that ${opts.misses} misses of one identity are not refused with 429 by design). Agent miss statuses: ${JSON.stringify(misses.agentStatuses)}; baseline rounds that failed: ${misses.directFailures}.`,
    );
    s.data = { ownOverhead: own, cpuPerMissMs, misses, singleFlight: { ...sf, upstreamCalls: upstream } };
    const missOk = (misses.agentStatuses['200'] ?? 0) === opts.misses && misses.directFailures === 0 && own.count >= opts.misses;
    goals.check('P2', "miss overhead p99 (the agent's own time per miss, upstream round trips excluded)", `≤ ${MISS_OVERHEAD_GOAL_MS} ms`, `p99 ${ms(own.p99AtMostMs)} ms, ${round(own.shareUnderGoal * 100, 1)} % of ${own.count} misses ≤ ${MISS_OVERHEAD_GOAL_MS} ms (p50 ${ms(own.p50AtMostMs)} ms)${missOk ? '' : '; some misses failed'}`, missOk && own.shareUnderGoal >= 0.99);
    goals.check('P2', `upstream calls for ${opts.singleFlight} concurrent first requests`, 'exactly 1', `${upstream} (statuses ${JSON.stringify(sf.statuses)})`, upstream === 1 && (sf.statuses['200'] ?? 0) === opts.singleFlight);
  } finally {
    emu.faults.remove(rule);
    await agent.stop();
  }
  return s;
}

/**
 * Grows the agent's world to `agentPods` bound pods on its node and `agentIdentities` PodIdentities in the
 * cluster (100 per namespace; the load pod's namespace is the first), then has every pod fetch a token once
 * so the cache holds one per pod.
 */
export async function growAgentWorld(stage: AgentStage, opts: BenchOptions, log: Log): Promise<{ namespaces: number; callerNamespaceIdentities: number; warmFailures: number }> {
  const { objects } = stage;
  const perNs = 100;
  const nsCount = Math.max(1, Math.ceil(opts.agentIdentities / perNs));
  const namespaces = [stage.loadPod.namespace];
  for (let i = 1; i < nsCount; i++) {
    const ns = await objects.namespace('bench-agent');
    await objects.serviceAccount(ns, 'app');
    namespaces.push(ns);
  }
  const extraPods = Math.max(0, Math.min(opts.agentPods, opts.agentIdentities) - stage.pods.length);
  log(`P4: ${extraPods} more bound pods on the agent's node`);
  const added = await mapLimit(Array.from({ length: extraPods }, (_, i) => i + stage.pods.length), 8, (i) =>
    objects.boundPod(namespaces[i % namespaces.length]!, `pod-${i}`, podAddress(i), 'app'),
  );
  stage.pods.push(...added);
  const unbound = Math.max(0, opts.agentIdentities - stage.pods.length);
  log(`P4: ${unbound} more PodIdentities without pods on this node`);
  await mapLimit(Array.from({ length: unbound }, (_, i) => i), 8, async (i) => {
    const ns = namespaces[i % namespaces.length]!;
    await objects.readyPodIdentity(ns, `other-${i}`, objects.identity(`${ns}-other-${i}`));
  });
  log('P4: every pod fetches its first token');
  let warmFailures = 0;
  await mapLimit(stage.pods, 8, async (pod) => {
    const ok = await waitFor(`token for ${pod.name}`, async () => {
      const res = await getToken(stage.agent, pod.ip);
      return res.status === 200 && tokenMatches(res.json, pod);
    }, { timeoutMs: 30_000, intervalMs: 200 }).catch(() => false);
    if (!ok) warmFailures++;
  });
  const callerNamespaceIdentities = Math.ceil(opts.agentIdentities / nsCount);
  return { namespaces: nsCount, callerNamespaceIdentities, warmFailures };
}

/** The agent's memory as its process metrics report it (bytes). */
async function agentHeap(agent: AgentProcess): Promise<{ rss: number; heapTotal: number; newSpace: number; oldUsed: number; code: number; external: number }> {
  const text = await (await fetch(`${agent.metricsOrigin}/metrics`)).text();
  const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(series + ' '))?.split(' ').pop() ?? NaN);
  return {
    rss: value('process_resident_memory_bytes'),
    heapTotal: value('nodejs_heap_size_total_bytes'),
    newSpace: value('nodejs_heap_space_size_total_bytes{space="new"}'),
    oldUsed: value('nodejs_heap_space_size_used_bytes{space="old"}'),
    code: value('nodejs_heap_space_size_total_bytes{space="code"}'),
    external: value('nodejs_external_memory_bytes'),
  };
}

export async function runAgentScale(stage: AgentStage, opts: BenchOptions, goals: GoalBook, log: Log, measureP5: boolean, importTable = true): Promise<{ p4: Section; p5Rows: (string | number)[][]; p5Points: { identities: number; p50: number; p99: number; rps: number }[] }> {
  const s = section('P4', 'Memory (agent half)');
  const rssBefore = stage.agent.rss();
  const world = await growAgentWorld(stage, opts, log);
  // Let the informers settle and the warm-up's garbage be collected in the normal course of things.
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 200));
    samples.push(stage.agent.rss());
  }
  const agentRss = Math.max(...samples);
  const baselineRss = rssBytes(stage.baseline.proc.pid);
  const mb = (b: number) => round(b / 2 ** 20, 1);
  // Where that RSS is, from the agent's own process metrics (prom-client's defaults), read right after.
  const heap = await agentHeap(stage.agent);
  const parts = rssParts(stage.agent.pid());
  // A heap snapshot collects garbage, so with one the at-rest reading below is no longer the agent's own.
  const dumpDir = process.env['BENCH_P4_DUMP'];
  if (dumpDir) await dumpProcessMemory(stage.agent.pid(), dumpDir, 'agent-p4', stage.agent.metricsOrigin);
  if (dumpDir && process.env['BENCH_P4_HOLD']) await holdWhileFileExists(dumpDir, log);
  // Where it settles with no requests: the agent gives V8's pooled pages back once quiet (agent/memory-reducer.ts).
  let restRss: number | undefined;
  if (!opts.smoke) {
    log(`P4: ${AGENT_REST_MS / 1000} s without requests`);
    await new Promise((r) => setTimeout(r, AGENT_REST_MS));
    const rest: number[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 200));
      rest.push(stage.agent.rss());
    }
    restRss = Math.max(...rest);
  }
  s.tables.push({
    columns: ['Process', 'Pods on node', 'PodIdentities in cluster', 'Cached tokens', 'RSS (MB)', 'Ratio to baseline B'],
    rows: [
      ['agent before growth (1 pod, 1 PodIdentity)', 1, 1, 1, mb(rssBefore), round(rssBefore / baselineRss, 2)],
      ['agent', stage.pods.length, opts.agentIdentities, stage.pods.length - world.warmFailures, mb(agentRss), round(agentRss / baselineRss, 2)],
      ...(restRss === undefined ? [] : [[`agent at rest (${AGENT_REST_MS / 1000} s later, no requests)`, stage.pods.length, opts.agentIdentities, stage.pods.length - world.warmFailures, mb(restRss), round(restRss / baselineRss, 2)]]),
      ['baseline B (bare node http server, after its P1 load)', '—', '—', '—', mb(baselineRss), 1],
    ],
  });
  s.notes.push(
    `PodIdentities spread over ${world.namespaces} namespace(s), about ${world.callerNamespaceIdentities} per namespace; each pod on the node has its own Ready PodIdentity and federated credential and fetched one token (failures: ${world.warmFailures}). RSS is the max of 5 VmRSS reads from /proc over 1 s, after the warm-up.`,
    `Both processes run as plain \`node\` on JavaScript compiled at the start of the run (no tsx loader), as in production; the agent as its image runs it: node flags ${agentNodeFlags().join(' ')}, env ${Object.entries(agentEnv()).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(' ')}.`,
    stage.agent.apiConfig === 'in-cluster'
      ? 'The agent uses in-cluster config, as in a pod (KUBERNETES_SERVICE_HOST/PORT, token and CA bind-mounted at the service-account path in a private mount namespace): it loads no client-node.'
      : 'Not run as root: the agent uses --kubeconfig, which loads client-node (about 84 MB more than in a pod; see the import table). Run the bench as root to measure the production path.',
  );
  s.tables.push({
    title: 'Where the agent\'s RSS is, from its /metrics right after the readings above (MB)',
    columns: ['RSS', 'anonymous', 'file pages (the node binary, libraries)', 'V8 heap committed', 'of which young generation (new space)', 'old space used', 'code space', 'external (buffers, TLS)'],
    rows: [[mb(heap.rss), mb(parts.anonymous), mb(parts.file), mb(heap.heapTotal), mb(heap.newSpace), mb(heap.oldUsed), mb(heap.code), mb(heap.external)]],
  });
  // What the agent's libraries cost before any work: the floor under the agent's RSS.
  const agentModules = pathToFileURL(compiled('agent/agent.ts')).href;
  // Each round is a fresh process per row; the smoke run only checks the table is produced.
  const importRounds = opts.smoke ? 1 : 3;
  const imports = !importTable ? [] : await importRss({ nodeFlags: agentNodeFlags(), env: agentEnv() }, [
    ...['@kubernetes/client-node', 'prom-client', 'winston'].map((m) => ({ label: m, specifiers: [m] })),
    // As the agent loads it: its CommonJS build (agent/issuance/aad-exchange.ts), not the ES one `import` picks.
    { label: '@azure/msal-node (its CommonJS build, as the agent loads it)', specifiers: [pathToFileURL(createRequire(import.meta.url).resolve('@azure/msal-node')).href] },
    // What lib/node-http.ts avoids: importing node:http from an ES module runs its lazy getters, which load undici.
    { label: 'node:http, imported from an ES module (the agent requires it instead)', specifiers: ['node:http'] },
    { label: 'the agent\'s modules (agent/agent.ts and all it imports: its start-up floor in a pod)', specifiers: [agentModules] },
    { label: 'the agent\'s modules + client-node (what --kubeconfig adds)', specifiers: [agentModules, '@kubernetes/client-node'] },
  ], importRounds);
  if (importTable) {
    const bare = imports[0]!.rssBytes;
    s.tables.push({
      title: `What the agent's libraries cost: RSS of a fresh node process (the image's node flags and env) after importing only that, median of ${importRounds}`,
      columns: ['Module', 'RSS (MB)', 'Added to a bare node (MB)'],
      rows: imports.map((i) => [i.module, mb(i.rssBytes), i.module === '(nothing)' ? '—' : mb(i.rssBytes - bare)]),
    });
  }
  s.data = { apiConfig: stage.agent.apiConfig, heap, rssParts: parts, agentRssBytes: agentRss, agentRestRssBytes: restRss, agentRssBeforeBytes: rssBefore, baselineRssBytes: baselineRss, world, pods: stage.pods.length, identities: opts.agentIdentities, importRss: imports };
  goals.check('P4', `agent RSS with ${stage.pods.length} pods and ${opts.agentIdentities} PodIdentities`, '≤ 100 MB', `${mb(agentRss)} MB (${round(agentRss / baselineRss, 2)} × bare Node)${restRss === undefined ? '' : `; ${mb(restRss)} MB at rest`}`, agentRss <= 100 * 2 ** 20 && world.warmFailures === 0);

  const p5Rows: (string | number)[][] = [];
  const p5Points: { identities: number; p50: number; p99: number; rps: number }[] = [];
  if (measureP5) {
    if (stage.p1At16) {
      const { a, b } = stage.p1At16;
      p5Rows.push([1, 1, 1, Math.round(a.rps), a.latency.p50, a.latency.p99, a.latency.p999, round(a.rps / b.rps, 3)]);
      p5Points.push({ identities: 1, p50: a.latency.p50, p99: a.latency.p99, rps: a.rps });
    }
    log('P5: P1 at concurrency 16 with the grown caches');
    const b = await runLoadgen(loadSpec(opts, stage.baseline.origin, 16, stage.loadPod.ip));
    const a = await runLoadgen(loadSpec(opts, stage.agent.origin, 16, stage.loadPod.ip));
    p5Rows.push([stage.pods.length, opts.agentIdentities, world.callerNamespaceIdentities, Math.round(a.rps), a.latency.p50, a.latency.p99, a.latency.p999, round(a.rps / b.rps, 3)]);
    p5Points.push({ identities: opts.agentIdentities, p50: a.latency.p50, p99: a.latency.p99, rps: a.rps });
  }
  return { p4: s, p5Rows, p5Points };
}
