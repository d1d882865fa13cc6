/**
 * The resilience and security soak. For `soakMs`: verified load on the agent from the stable pods (every
 * token's oid/appid checked against the caller's identity), IP-reuse churn (a pod is deleted and another
 * pod with another identity takes its address; the address is probed at once), PodIdentity churn through the
 * operator, and, on a timeline, emulator faults (429 + Retry-After, 500s, 2 s latency spikes), an API server
 * restart, an operator SIGKILL and an agent restart. Then churn and faults stop and the harness measures how
 * long until everything is right again, and counts wrong-pod tokens and orphaned or duplicate Azure resources.
 */
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { claimsOf, rawRequest } from '../azure-emulator/test-fixture.js';
import type { AgentStage } from './agent-sections.js';
import { startAttackTraffic, type AttackStats } from './attack-traffic.js';
import { BenchObjects, podAddress, TOKEN_PATH, type BenchEnv, type BoundPod } from './fixture.js';
import type { ExpectedIdentity, LoadResult } from './loadgen.js';
import { OPERATOR_RG, startOperatorProcess } from './operator-process.js';
import type { BenchOptions } from './options.js';
import { startJsonScript } from './processes.js';
import { round, section, type GoalBook, type Section } from './report.js';

type Log = (msg: string) => void;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface TimelineEvent {
  atS: number;
  event: string;
  detail?: string;
}

interface ChurnSlot {
  ip: string;
  /** The two identities that take turns on this address. */
  variants: BoundPod[];
  current: number;
  podName: string;
  generation: number;
  /** False between a deletion and the creation of the next pod (e.g. the create failed while the API server was down). */
  present: boolean;
}

interface ChurnStats {
  cycles: number;
  probes: number;
  ok: number;
  refused: number;
  wrong: number;
  wrongSamples: string[];
  firstTokenMs: number[];
  failures: number;
}

async function probe(stage: AgentStage, ip: string): Promise<{ status: number; oid?: string; appid?: string }> {
  try {
    // A new connection per probe: a connection lives in its pod's network namespace and never passes to the
    // pod that takes the address next, but Node's keep-alive agent would hand it on by local address.
    const res = await rawRequest(`${stage.agent.origin}${TOKEN_PATH}`, { headers: { Metadata: 'true', Connection: 'close' }, localAddress: ip });
    const token = (res.json as { access_token?: string } | undefined)?.access_token;
    if (res.status !== 200 || !token) return { status: res.status };
    const claims = claimsOf(token);
    return { status: 200, oid: String(claims['oid']), appid: String(claims['appid']) };
  } catch {
    return { status: 0 };
  }
}

function pct(list: number[], p: number): number {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

export async function runSoak(env: BenchEnv, stage: AgentStage, opts: BenchOptions, goals: GoalBook, log: Log): Promise<Section> {
  const s = section('SOAK', 'Resilience and security soak');
  const { emu } = env.fx;
  const objects = new BenchObjects(env);
  const timeline: TimelineEvent[] = [];
  const t0 = Date.now();
  const mark = (event: string, detail?: string) => {
    timeline.push({ atS: round((Date.now() - t0) / 1000, 1), event, ...(detail ? { detail } : {}) });
    log(`SOAK: ${event}${detail ? ` (${detail})` : ''}`);
  };

  // IP-reuse churn: each slot's address alternates between two pods with different identities and accounts.
  const ns = await objects.namespace('bench-soak');
  for (const sa of ['sa-a', 'sa-b']) await objects.serviceAccount(ns, sa);
  const slots: ChurnSlot[] = [];
  for (let k = 0; k < 4; k++) {
    const ip = podAddress(60_000 + k);
    const variants: BoundPod[] = [];
    for (const [v, sa] of [['a', 'sa-a'], ['b', 'sa-b']] as const) {
      const identity = objects.identity(`${ns}-churn-${k}-${v}`);
      await objects.federatedCredential(identity, ns, sa);
      await objects.readyPodIdentity(ns, `churn-${k}-${v}`, identity);
      variants.push({ namespace: ns, name: `churn-${k}-${v}`, uid: '', serviceAccount: sa, ip, identity, podIdentity: `churn-${k}-${v}` });
    }
    const podName = `churn-${k}-g0`;
    await objects.pod(ns, podName, ip, { 'podidentity.dev/identity': variants[0]!.podIdentity }, variants[0]!.serviceAccount);
    slots.push({ ip, variants, current: 0, podName, generation: 0, present: true });
  }

  // Operator churn in its own namespace (the operator watches only that one).
  const opNs = await objects.namespace('bench-soak-op');
  await objects.serviceAccount(opNs, 'app');
  const operator = await startOperatorProcess(env, 'operator-soak', [`--watch-namespace=${opNs}`]);
  const createPid = (name: string) =>
    env.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: opNs,
      plural: PODIDENTITY_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: 'PodIdentity',
        metadata: { name },
        spec: { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: `/subscriptions/${emu.subscriptionId}/resourceGroups/${OPERATOR_RG}` }], serviceAccounts: ['app'], mode: 'Federated' },
      },
    });
  const deletePid = (name: string) => env.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: opNs, plural: PODIDENTITY_PLURAL, name });

  const stable = stage.pods.slice(0, 8);
  const expect: Record<string, ExpectedIdentity> = Object.fromEntries(stable.map((p) => [p.ip, { oid: p.identity.principalId, appid: p.identity.clientId }]));
  const imdsBefore = emu.requests.count('imds.token');
  const instanceBefore = emu.requests.count('imds.instance');
  // Attack traffic (issue 11 items 2, 3, 6) for the whole soak; its own answers are checked like the load's.
  const attacks = await startAttackTraffic(env, stage, stable, { untilMs: t0 + opts.soakMs + 600_000 });
  const churnStopAt = t0 + Math.round(opts.soakMs * 0.8);
  const end = t0 + opts.soakMs;

  mark('load and churn start', `${stable.length} stable pods at concurrency 16, ${slots.length} IP-reuse slots, PodIdentity churn through the operator`);
  // The load lasts until convergence has been seen (restarts can stretch the timeline); finish() ends it.
  const load = startJsonScript<LoadResult>('loadgen', 'dev/bench/loadgen.ts', { origin: stage.agent.origin, path: TOKEN_PATH, headers: { Metadata: 'true' }, concurrency: 16, durationMs: opts.soakMs + 600_000, warmupMs: 0, localAddresses: stable.map((p) => p.ip), expect, requestTimeoutMs: 15_000 });

  const placePod = async (slot: ChurnSlot) => {
    const want = slot.variants[slot.current]!;
    await objects.pod(ns, slot.podName, slot.ip, { 'podidentity.dev/identity': want.podIdentity }, want.serviceAccount).catch(async (err: { code?: number }) => {
      if (err.code !== 409) throw err;
      await objects.podRunning(ns, slot.podName, slot.ip); // created by an earlier try that failed before its status
    });
    slot.present = true;
  };
  const churn: ChurnStats = { cycles: 0, probes: 0, ok: 0, refused: 0, wrong: 0, wrongSamples: [], firstTokenMs: [], failures: 0 };
  const pidNames: string[] = [];
  let pidSeq = 0;
  const churnLoop = async () => {
    let i = 0;
    while (Date.now() < churnStopAt) {
      const slot = slots[i++ % slots.length]!;
      try {
        if (slot.present) {
          await objects.deletePod(ns, slot.podName);
          slot.present = false;
          slot.current = 1 - slot.current;
          slot.generation++;
          slot.podName = `churn-${slots.indexOf(slot)}-g${slot.generation}`;
        }
        const want = slot.variants[slot.current]!;
        const created = Date.now();
        await placePod(slot);
        // Probe the reused address at once and until the new pod gets its token (bounded).
        let gotToken = false;
        for (let n = 0; n < 40 && Date.now() < churnStopAt + 5_000; n++) {
          const r = await probe(stage, slot.ip);
          churn.probes++;
          if (r.status === 200) {
            if (r.oid !== want.identity.principalId || r.appid !== want.identity.clientId) {
              churn.wrong++;
              if (churn.wrongSamples.length < 10) churn.wrongSamples.push(`${slot.ip} (${slot.podName}): got oid ${r.oid}, want ${want.identity.principalId}`);
            } else {
              churn.ok++;
              if (!gotToken) churn.firstTokenMs.push(Date.now() - created);
              gotToken = true;
              break;
            }
          } else churn.refused++;
          await sleep(100);
        }
        churn.cycles++;
      } catch {
        churn.failures++; // e.g. while the API server restarts
        await sleep(200);
      }
      try {
        const name = `soak-${pidSeq++}`;
        await createPid(name);
        pidNames.push(name);
        if (pidNames.length > 5) await deletePid(pidNames.shift()!);
      } catch {
        churn.failures++;
      }
    }
  };

  const at = (fraction: number) => sleep(Math.max(0, t0 + opts.soakMs * fraction - Date.now()));
  const ruleIds: number[] = [];
  const faults = async () => {
    const arm = { path: '/subscriptions/' };
    await at(0.1);
    mark('faults: 429 with Retry-After on Azure AD token and ARM writes');
    ruleIds.push(emu.faults.set({ match: { route: 'aad.token' }, status: 429, retryAfterSeconds: 1, errorRate: 0.5 }));
    ruleIds.push(emu.faults.set({ match: { ...arm, method: 'PUT' }, status: 429, retryAfterSeconds: 1, errorRate: 0.3 }));
    await at(0.25);
    emu.faults.clear();
    mark('faults: 500s on Azure AD token and ARM');
    ruleIds.push(emu.faults.set({ match: { route: 'aad.token' }, status: 500, errorRate: 0.3 }));
    ruleIds.push(emu.faults.set({ match: arm, status: 500, errorRate: 0.3 }));
    await at(0.4);
    emu.faults.clear();
    mark('faults: 2 s latency spikes on Azure AD token and ARM');
    ruleIds.push(emu.faults.set({ match: { route: 'aad.token' }, latencyMs: 2_000, errorRate: 0.2 }));
    ruleIds.push(emu.faults.set({ match: arm, latencyMs: 2_000, errorRate: 0.2 }));
    await at(0.5);
    emu.faults.clear();
    mark('API server restart');
    const { downMs } = await env.restartApiServer();
    mark('API server ready again', `${downMs} ms`);
    await at(0.6);
    mark('operator SIGKILL');
    await operator.killAndRestart();
    mark('operator ready again');
    await at(0.7);
    mark('agent restart');
    await stage.agent.restart();
    mark('agent ready again');
  };

  await Promise.all([churnLoop(), faults()]);
  emu.faults.clear();
  mark('churn and faults stopped; waiting for convergence');
  for (const slot of slots.filter((x) => !x.present)) {
    for (let n = 0; n < 60 && !slot.present; n++) await placePod(slot).catch(() => sleep(500));
  }

  // Convergence: every stable and churned address gets its own identity's token, and every remaining PodIdentity is Ready, every deleted one is gone, and Azure holds exactly their resources.
  const convergeStart = Date.now();
  const checks = { agent: false, operator: false, azure: false };
  let azureReport = { orphanedIdentities: 0, duplicateRoleAssignments: 0, duplicateCredentials: 0, missing: 0 };
  const deadline = convergeStart + 180_000;
  while (Date.now() < deadline && !(checks.agent && checks.operator && checks.azure)) {
    if (!checks.agent) {
      const results = await Promise.all([
        ...stable.map(async (p) => {
          const r = await probe(stage, p.ip);
          return r.status === 200 && r.oid === p.identity.principalId;
        }),
        ...slots.map(async (slot) => {
          const want = slot.variants[slot.current]!;
          const r = await probe(stage, slot.ip);
          if (r.status === 200 && r.oid !== want.identity.principalId) churn.wrong++;
          return r.status === 200 && r.oid === want.identity.principalId;
        }),
      ]);
      checks.agent = results.every(Boolean);
    }
    if (!checks.operator || !checks.azure) {
      const list = (await env.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: opNs, plural: PODIDENTITY_PLURAL }).catch(() => ({ items: [] }))) as { items: PodIdentity[] };
      // The API server is the truth: a create whose answer was lost (API server down) still made its object, and
      // a delete that failed left one. Delete whatever the harness does not intend to keep, then wait for it.
      const wanted = new Set(pidNames);
      for (const p of list.items) {
        if (!wanted.has(p.metadata.name ?? '') && !p.metadata.deletionTimestamp) await deletePid(p.metadata.name ?? '').catch(() => undefined);
      }
      const names = new Set(list.items.map((p) => p.metadata.name));
      const allReady = list.items.every((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      checks.operator = allReady && pidNames.every((n) => names.has(n)) && list.items.length === pidNames.length;
      if (checks.operator) {
        const live = new Set(list.items.map((p) => (p.status?.resourceId ?? '').toLowerCase()));
        const ours = emu.state.identities().filter((i) => i.resourceGroup.toLowerCase() === OPERATOR_RG.toLowerCase() && i.name.startsWith(opNs));
        const orphaned = ours.filter((i) => !live.has(i.id.toLowerCase()));
        const principals = new Set(ours.map((i) => i.principalId));
        const perPrincipal = new Map<string, number>();
        for (const ra of emu.state.roleAssignments()) if (principals.has(ra.principalId)) perPrincipal.set(ra.principalId, (perPrincipal.get(ra.principalId) ?? 0) + 1);
        azureReport = {
          orphanedIdentities: orphaned.length,
          duplicateRoleAssignments: [...perPrincipal.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0),
          duplicateCredentials: ours.map((i) => emu.state.federatedCredentials(i.id).length).filter((n) => n > 1).reduce((a, n) => a + n - 1, 0),
          missing: list.items.length - ours.filter((i) => live.has(i.id.toLowerCase())).length,
        };
        checks.azure = azureReport.orphanedIdentities === 0 && azureReport.duplicateRoleAssignments === 0 && azureReport.duplicateCredentials === 0 && azureReport.missing === 0;
      }
    }
    if (!(checks.agent && checks.operator && checks.azure)) await sleep(250);
  }
  const reconvergeMs = checks.agent && checks.operator && checks.azure ? Date.now() - convergeStart : null;
  mark(reconvergeMs === null ? 'did not converge within 180 s' : 'converged', JSON.stringify(checks));
  await sleep(Math.max(0, end - Date.now()));
  const result = await load.finish();
  const attack: AttackStats = await attacks.stop();
  await operator.stop();
  // Every PodIdentity in the soak is Federated: any request on the node IMDS token path is a pod's request
  // that got past the agent (a disguised token path forwarded by the metadata proxy, or the interception).
  const imdsDirect = emu.requests.count('imds.token') - imdsBefore;
  const instanceProxied = emu.requests.count('imds.instance') - instanceBefore;

  const total = result.requests + result.errors;
  const ok = result.statuses['200'] ?? 0;
  s.tables.push({
    title: `${opts.soakMs / 1000} s planned, ${round(result.measuredMs / 1000, 1)} s of load (restarts stretch the timeline) from ${stable.length} stable pods at concurrency 16, until convergence`,
    columns: ['Figure', 'Value'],
    rows: [
      ['tokens to the wrong pod (load, every 200 verified)', `${result.wrongIdentity} of ${result.verified}`],
      ['tokens to the wrong pod (IP-reuse probes)', `${churn.wrong} of ${churn.ok + churn.wrong}`],
      ['tokens to the wrong caller (attack traffic, every answer checked)', `${attack.wrong} of ${Object.values(attack.kinds).reduce((a, k) => a + k.requests, 0)} requests`],
      ['requests on the node IMDS token path during the soak (Federated only: any is a pod reaching it around the agent)', imdsDirect],
      ['node IMDS instance-metadata requests (the metadata proxy’s allow-list)', instanceProxied],
      ['orphaned Azure identities after convergence', azureReport.orphanedIdentities],
      ['duplicate role assignments / federated credentials', `${azureReport.duplicateRoleAssignments} / ${azureReport.duplicateCredentials}`],
      ['time to reconverge after churn and faults stop (s)', reconvergeMs === null ? 'did not converge in 180 s' : round(reconvergeMs / 1000, 1)],
      ['load: answered 200 / other status / no answer', `${ok} / ${result.requests - ok} / ${result.errors} (${round((ok / Math.max(1, total)) * 100, 2)} % 200)`],
      ['load: p50 / p99 / p999 / max (ms)', `${result.latency.p50} / ${result.latency.p99} / ${result.latency.p999} / ${result.latency.max}`],
      ['IP-reuse cycles / probes / refused while settling / harness retries', `${churn.cycles} / ${churn.probes} / ${churn.refused} / ${churn.failures}`],
      ['new pod on a reused address: time to first token p50 / p99 (ms)', churn.firstTokenMs.length ? `${pct(churn.firstTokenMs, 50)} / ${pct(churn.firstTokenMs, 99)}` : '—'],
      ['PodIdentities churned through the operator', pidSeq],
    ],
  });
  s.tables.push({
    title: 'Attack traffic (issue 11 items 2, 3, 6): answers by kind',
    columns: ['Kind', 'Requests', 'Statuses'],
    rows: [
      ...Object.entries(attack.kinds).map(([kind, k]) => [kind, k.requests, Object.entries(k.statuses).map(([code, n]) => `${code === '0' ? 'no answer' : code}: ${n}`).join(', ')]),
      ['slow connections (one header byte a second)', attack.slowConnections.opened, `closed or refused by the agent (each reopened): ${attack.slowConnections.closedByAgent}, still open at the end: ${attack.slowConnections.stillOpenAtEnd}`],
    ],
  });
  s.tables.push({ title: 'Timeline', columns: ['t (s)', 'Event', 'Detail'], rows: timeline.map((e) => [e.atS, e.event, e.detail ?? '']) });
  s.tables.push({ title: 'Load per 10 s (200 / other / no answer)', columns: ['t (s)', '200', 'other', 'no answer'], rows: bucket(result.timeline, 10) });
  s.notes.push(
    'Wrong-pod check: the load generator decodes every 200 token and compares oid and appid with the identity of the pod whose address the connection is bound to; IP-reuse probes do the same against the pod that holds the address after the swap.',
    'Real-IMDS check: on loopback there is no iptables interception to bypass, so the figure only shows that nothing in this setup reached the emulator\'s IMDS; the interception itself is tested by e2e/agent in network namespaces.',
    'API server restart: the same kube-apiserver command line is started again after SIGTERM (etcd keeps running).',
    'Attack traffic: disguised spellings of the token path (percent-escapes, case, //, /./, .., backslash, encoded /) with hints naming the node’s kubelet identity or a bound pod’s identity, from a pod with no PodIdentity, a pod of another namespace wearing a bound pod’s label, a bound pod and addresses that are no pod; repeated parameters, other methods and a scope as resource; one pod asking for ever new resources; requests from many non-pod addresses; 200 connections trickling their headers. Every answer is checked: a token only for the caller’s own identity, its audience equal to the echoed resource. The agent’s address is seeded as a scale-set instance with a system-assigned and a kubelet identity, so a forwarded token request would get a real node token.',
    ...(result.wrongSamples.length || churn.wrongSamples.length || attack.wrongSamples.length ? [`Wrong-pod samples: ${[...result.wrongSamples, ...churn.wrongSamples, ...attack.wrongSamples].join('; ')}`] : []),
  );
  s.data = { result, churn, timeline, reconvergeMs, azure: azureReport, imdsDirect, instanceProxied, attack, checks };

  const wrongTotal = result.wrongIdentity + churn.wrong + attack.wrong;
  goals.check('SOAK', 'tokens issued to the wrong pod (load, IP reuse, attack traffic)', '0', String(wrongTotal), wrongTotal === 0);
  goals.check('SOAK', 'requests that reached the node IMDS token path', '0', `${imdsDirect} (with attack traffic; loopback: no interception in play)`, imdsDirect === 0);
  const bad = azureReport.orphanedIdentities + azureReport.duplicateRoleAssignments + azureReport.duplicateCredentials;
  goals.check('SOAK', 'orphaned or duplicate Azure resources after convergence', '0', `${azureReport.orphanedIdentities} orphaned identities, ${azureReport.duplicateRoleAssignments} duplicate role assignments, ${azureReport.duplicateCredentials} duplicate credentials${checks.azure ? '' : ' (not converged)'}`, checks.azure && bad === 0);
  goals.check('SOAK', 'time to reconverge', 'reported (converges)', reconvergeMs === null ? 'did not converge within 180 s' : `${round(reconvergeMs / 1000, 1)} s`, reconvergeMs !== null);
  return s;
}

function bucket(timeline: [number, number, number][], seconds: number): (number | string)[][] {
  const rows: (number | string)[][] = [];
  for (let i = 0; i < timeline.length; i += seconds) {
    const slice = timeline.slice(i, i + seconds);
    rows.push([i, ...[0, 1, 2].map((k) => slice.reduce((a, t) => a + t[k]!, 0))]);
  }
  return rows;
}
