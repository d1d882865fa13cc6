/**
 * The operator's sections: P3 (convergence at scale and the ARM call budget), the operator half of P4
 * (RSS with many PodIdentities and pods) and the P3 half of P5 (time to Ready as N grows).
 *
 * Each N gets a fresh operator process restricted to a fresh namespace (`--watch-namespace`), so one run's
 * objects never count in the next. The baseline for the time to Ready is the ARM floor: the same writes
 * (identity PUT, role assignment PUT, federated credential PUT per PodIdentity) made by a plain client at
 * the operator's default concurrency against the same emulator latency, in the same run.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, TOKEN_EXCHANGE_AUDIENCE, VERSION, type PodIdentity } from '../../lib/api/types.js';
import type { RequestLogEntry } from '../azure-emulator/emulator.js';
import { claimsOf, operatorToken, rawRequest } from '../azure-emulator/test-fixture.js';
import { BENCH_NODE, BenchObjects, mapLimit, podAddress, TOKEN_PATH, type BenchEnv } from './fixture.js';
import type { BenchOptions } from './options.js';
import { OPERATOR_RG, startOperatorProcess, type OperatorProcess } from './operator-process.js';
import { lineChartSvg, notMeasured, round, section, type GoalBook, type Section } from './report.js';
import { PRODUCT_NODE_FLAGS } from './processes.js';

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

interface ConvergenceRun {
  n: number;
  namespace: string;
  applyMs: number;
  readyMs: number | null;
  ready: number;
  floorMs: number;
  counts: Record<string, number>;
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
  return list.items.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

function between(log: RequestLogEntry[], from: number, to: number): RequestLogEntry[] {
  return log.filter((e) => e.at >= from && e.at <= to);
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
  log(`P3: N=${n}: ARM floor (plain client, ${OPERATOR_WORKERS} lanes)`);
  const floorMs = await armFloor(env, n, OPERATOR_WORKERS);
  const op = await startOperatorProcess(env, `operator-p3-${n}`, [`--watch-namespace=${namespace}`]);
  try {
    log(`P3: N=${n}: applying PodIdentities`);
    const before = emu.requests.counts();
    const t0 = Date.now();
    await mapLimit(Array.from({ length: n }, (_, i) => i), 16, (i) =>
      env.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: pidBody(`pid-${i}`, emu.subscriptionId) }),
    );
    const applyMs = Date.now() - t0;
    let ready = 0;
    let readyAt: number | null = null;
    const deadline = t0 + opts.p3TimeoutMs;
    while (Date.now() < deadline) {
      ready = await countReady(env, namespace);
      if (ready === n) {
        readyAt = Date.now();
        break;
      }
      await sleep(n >= 100 ? 500 : 100);
    }
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
    const run: ConvergenceRun = {
      n,
      namespace,
      applyMs,
      readyMs: readyAt ? readyAt - t0 : null,
      ready,
      floorMs,
      counts,
      writes,
      steady: { windowMs: steadyMs, writes: steadyEntries.filter((e) => e.method !== 'GET').length, reads: steadyEntries.filter((e) => e.method === 'GET').length, byRoute },
      operatorRssBytes: op.rss(),
      requestLogFile,
    };
    if (keepOperator) return { run, op };
    await op.stop();
    return { run };
  } catch (err) {
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

async function operatorMemory(env: BenchEnv, opts: BenchOptions, log: Log, reuse?: { namespace: string; op: OperatorProcess; n: number }): Promise<{ section: Section; rssBytes: number; baselineBytes: number }> {
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
    // Baseline: an idle Node process of the same binary, measured now.
    const baselineBytes = await idleNodeRss();
    const mb = (b: number) => round(b / 2 ** 20, 1);
    s.tables.push({
      title: 'Operator RSS',
      columns: ['Process', 'PodIdentities', 'Pods', 'RSS (MB)', 'Ratio to idle node'],
      rows: [
        ['operator, PodIdentities Ready, before pods', pids, 0, mb(rssBefore), round(rssBefore / baselineBytes, 2)],
        ['operator, with pods', pids, opts.operatorPods, mb(rss), round(rss / baselineBytes, 2)],
        ['baseline: idle `node` process', '—', '—', mb(baselineBytes), 1],
      ],
    });
    s.notes.push(`Operator run with --watch-namespace on the namespace that holds its ${pids} PodIdentities and the ${opts.operatorPods} pods (no kubelet: the pods stay Pending), pods spread over 50 node names, each selected by one PodIdentity and using the service account the PodIdentities already federate. The operator runs with its image's node flags (${PRODUCT_NODE_FLAGS.join(' ')}): without them V8 sizes the young generation from this machine's memory rather than a container's.`);
    s.notes.push('RSS moves with garbage collection; the goal is checked against the highest of the readings above.');
    const peak = Math.max(rss, rssBefore);
    s.data = { rssBytes: peak, rssWithPodsBytes: rss, rssBeforePodsBytes: rssBefore, baselineBytes, pids, pods: opts.operatorPods };
    return { section: s, rssBytes: peak, baselineBytes };
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
      goals.check('P4', `operator RSS with ${mem.section.data['pids'] as number} PodIdentities and ${opts.operatorPods} pods`, '≤ 300 MB', `${mb} MB peak (${round(mem.rssBytes / mem.baselineBytes, 2)} × idle node)`, mem.rssBytes <= 300 * 2 ** 20);
    }
  } finally {
    await kept?.op.stop();
    env.fx.emu.faults.remove(latency);
  }

  if (want.p3) {
    const sec = (ms: number | null) => (ms === null ? 'not Ready' : round(ms / 1000, 1));
    p3.tables.push({
      title: `Federated, 1 role each, ARM latency ${opts.armLatencyMs} ms per call; operator with default flags (--workers ${OPERATOR_WORKERS})`,
      columns: ['N', 'Apply (s)', 'All Ready (s)', 'Ready', 'ARM floor (s)', 'Ready / floor', 'identity PUTs (unique)', 'role PUTs (unique)', 'FIC PUTs (unique)'],
      rows: runs.map((r) => [r.n, sec(r.applyMs), sec(r.readyMs), `${r.ready}/${r.n}`, sec(r.floorMs), r.readyMs === null ? '—' : round(r.readyMs / r.floorMs, 2), `${r.writes['identities.put']!.total} (${r.writes['identities.put']!.unique})`, `${r.writes['roleAssignments.put']!.total} (${r.writes['roleAssignments.put']!.unique})`, `${r.writes['fic.put']!.total} (${r.writes['fic.put']!.unique})`]),
    });
    const routes = [...new Set(runs.flatMap((r) => Object.keys(r.counts)))].sort();
    p3.tables.push({
      title: 'Emulator requests by type per PodIdentity, from apply until all Ready',
      columns: ['Request', ...runs.map((r) => `N=${r.n}`)],
      rows: routes.map((k) => [k, ...runs.map((r) => round((r.counts[k] ?? 0) / r.n, 3))]),
    });
    p3.tables.push({
      title: 'Steady state after convergence (ARM requests only)',
      columns: ['N', 'Window (s)', 'Writes', 'Reads', 'By type'],
      rows: runs.map((r) => [r.n, r.steady.windowMs / 1000, r.steady.writes, r.steady.reads, JSON.stringify(r.steady.byRoute)]),
    });
    p3.notes.push(
      'The ARM floor is the same three writes per PodIdentity (identity PUT, Reader role assignment PUT, federated credential PUT) made by a plain client with 4 PodIdentities in flight, the operator\'s default worker count, against the same emulator latency — the time an ideal controller with that concurrency would need.',
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
    if (at1000) goals.check('P3', '1,000 PodIdentities Ready', '≤ 60 s', at1000.readyMs === null ? `${at1000.ready}/1000 Ready after ${opts.p3TimeoutMs / 1000} s` : `${round(at1000.readyMs / 1000, 1)} s (${round(at1000.readyMs / at1000.floorMs, 2)} × ARM floor)`, at1000.readyMs !== null && at1000.readyMs <= 60_000);
    else goals.unmeasured('P3', '1,000 PodIdentities Ready', '≤ 60 s', `N=1000 not in --p3-n (${opts.p3N.join(',')})${biggest ? `; N=${biggest.n}: ${sec(biggest.readyMs)} s` : ''}`);
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
