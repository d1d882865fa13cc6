/**
 * Attack traffic for the soak (issue 11, items 2, 3 and 6), running beside the verified load for the whole
 * soak, faults and restarts included:
 *
 * - disguised token paths (`%69dentity`, `IDENTIT%59`, `identity%2Foauth2%2Ftoken`, `//`, `/./`, `..`,
 *   backslash) with hints naming the node's identities or another pod's, from a pod with no PodIdentity, a
 *   pod of another namespace wearing a bound pod's label, a bound pod, and addresses that are no pod;
 * - malformed requests: repeated parameters, methods other than GET, a resource written as a scope;
 * - exhaustion: many slow connections that trickle their headers, one pod asking for many distinct
 *   resources, and requests from many addresses that are not pods of the node.
 *
 * Every answer is checked: a token only ever for the caller's own identity, with the echoed resource equal
 * to its audience. Nothing here decides whether the agent's caps are right; it counts what came back.
 */
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimsOf, operatorToken, rawRequest } from '../azure-emulator/test-fixture.js';
import type { IdentityView } from '../azure-emulator/emulator.js';
import type { AgentStage } from './agent-sections.js';
import { BENCH_NODE, BenchObjects, podAddress, RESOURCE, type BenchEnv, type BoundPod } from './fixture.js';

const QUERY = `?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`;

/** Each decodes, as IMDS decodes it, to the token path. */
export const DISGUISED_TOKEN_PATHS = [
  '/metadata/%69dentity/oauth2/token',
  '/metadata/IDENTIT%59/oauth2/token',
  '/metadata/identity%2Foauth2%2Ftoken',
  '/metadata//identity/oauth2/token',
  '/metadata/./identity/oauth2/token',
  '/metadata/instance/../identity/oauth2/token',
  '/metadata/instance%2F..%2Fidentity/oauth2/token',
  '/metadata\\identity\\oauth2\\token',
  '/metadata%5Cidentity%5Coauth2%5Ctoken',
];

/** Address ranges no pod of the bench uses. */
const strangerAddress = (i: number) => `127.0.200.${1 + (i % 250)}`;
const slowAddress = (i: number) => `127.0.201.${1 + (i % 250)}`;

interface Answer {
  status: number;
  text: string;
}

function send(origin: string, path: string, from: string, method = 'GET'): Promise<Answer> {
  const url = new URL(origin);
  return new Promise((resolve) => {
    // The path goes out byte for byte: no client-side normalisation, a fresh connection each time.
    const req = request({ host: url.hostname, port: url.port, path, method, localAddress: from, agent: false, headers: { Metadata: 'true', Connection: 'close' }, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', () => resolve({ status: 0, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, text: '' }));
    req.end();
  });
}

export interface AttackKindStats {
  requests: number;
  statuses: Record<string, number>;
}

export interface AttackStats {
  kinds: Record<string, AttackKindStats>;
  /** Tokens for an identity the caller may not have, or whose audience is not the echoed resource. */
  wrong: number;
  wrongSamples: string[];
  /** `closedByAgent`: closed (timeouts, caps) or refused (agent restarting) before the soak ended; each is reopened. */
  slowConnections: { opened: number; closedByAgent: number; stillOpenAtEnd: number };
}

export interface AttackTraffic {
  stop(): Promise<AttackStats>;
}

interface Caller {
  label: string;
  ip: string;
  /** The identity this caller may get; undefined: none. */
  own?: IdentityView;
}

export interface AttackOptions {
  /** The traffic ends by itself then, even if the soak fails before it calls stop(). */
  untilMs: number;
}

/**
 * Each kind is paced (`PACE_MS` between requests of one loop, longer after a request that got no answer):
 * a steady attack beside the load, not a CPU benchmark of the harness on a shared machine.
 */
const PACE_MS = { disguised: 50, malformed: 100, greedy: 200, strangers: 50, afterNoAnswer: 500 };

export async function startAttackTraffic(env: BenchEnv, stage: AgentStage, victims: BoundPod[], options: AttackOptions): Promise<AttackTraffic> {
  const { emu } = env.fx;
  const objects = new BenchObjects(env);
  const origin = stage.agent.origin;
  const victim = victims[0]!;

  // The node's own identities, as the agent's upstream IMDS sees the agent's address: a system-assigned one
  // and a kubelet identity. (If an earlier section already seeded the agent's address, that scale set
  // answers instead; a forward to the token path is counted either way.)
  const kubelet = emu.seed.identity({ resourceGroup: 'bench-soak-mc', name: 'kubelet' });
  const pool = emu.seed.scaleSet({ resourceGroup: 'bench-soak-mc', name: 'soakpool', systemAssigned: true, instances: [{ nodeName: BENCH_NODE, ip: '127.0.0.1', instanceId: '98' }] });
  const assigned = await rawRequest(`${emu.armEndpoint}${pool.id}?api-version=2026-04-01`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${await operatorToken(env.fx)}` },
    body: JSON.stringify({ identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [kubelet.id]: {} } } }),
  });
  if (assigned.status >= 300) throw new Error(`assigning the kubelet identity to the soak's scale set: ${assigned.status} ${assigned.text}`);

  const ns = await objects.namespace('bench-soak-attack');
  await objects.serviceAccount(ns, 'app');
  const unboundIp = podAddress(61_000);
  await objects.pod(ns, 'unbound', unboundIp, { app: 'attacker' }, 'app');
  // Wears the victim's PodIdentity label, in a namespace where no PodIdentity has that name.
  const labelledIp = podAddress(61_001);
  await objects.pod(ns, 'labelled', labelledIp, { 'podidentity.dev/identity': victim.podIdentity }, 'app');
  const greedy = await objects.boundPod(ns, 'greedy', podAddress(61_002), 'app');

  const callers: Caller[] = [
    { label: 'pod without a PodIdentity', ip: unboundIp },
    { label: 'pod of another namespace wearing a bound pod’s label', ip: labelledIp },
    { label: 'bound pod', ip: victim.ip, own: victim.identity },
    { label: 'address that is no pod', ip: strangerAddress(0) },
  ];
  const hints = [
    '',
    `&client_id=${kubelet.clientId}`,
    `&object_id=${kubelet.principalId}`,
    `&msi_res_id=${encodeURIComponent(kubelet.id)}`,
    `&mi_res_id=${encodeURIComponent(kubelet.id)}`,
    `&client_id=${victim.identity.clientId}`,
    `&mi_res_id=${encodeURIComponent(victim.identity.id)}`,
  ];

  const stats: AttackStats = { kinds: {}, wrong: 0, wrongSamples: [], slowConnections: { opened: 0, closedByAgent: 0, stillOpenAtEnd: 0 } };
  const count = (kind: string, status: number) => {
    const k = (stats.kinds[kind] ??= { requests: 0, statuses: {} });
    k.requests++;
    k.statuses[String(status)] = (k.statuses[String(status)] ?? 0) + 1;
  };
  const wrong = (what: string) => {
    stats.wrong++;
    if (stats.wrongSamples.length < 10) stats.wrongSamples.push(what);
  };
  /** The invariant on every answer: a token only for the caller's own identity, audience = echoed resource. */
  const check = (kind: string, caller: Caller, what: string, answer: Answer) => {
    count(kind, answer.status);
    lastStatus = answer.status;
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(answer.text) as Record<string, unknown>;
    } catch {
      /* not JSON: no token either */
    }
    const token = typeof body['access_token'] === 'string' ? body['access_token'] : undefined;
    if (!token) {
      if (/eyJ[\w-]+\.[\w-]+\./.test(answer.text)) wrong(`${caller.label} ${what}: a token outside access_token`);
      return;
    }
    const claims = claimsOf(token);
    if (!caller.own || claims['oid'] !== caller.own.principalId) wrong(`${caller.label} ${what}: got oid ${String(claims['oid'])}`);
    else if (body['resource'] !== claims['aud']) wrong(`${caller.label} ${what}: resource ${String(body['resource'])} but aud ${String(claims['aud'])}`);
  };

  let stopped = false;
  const running = () => !stopped && Date.now() < options.untilMs;
  const loops: Promise<void>[] = [];
  let lastStatus = 200;
  const loop = (paceMs: number, fn: (i: number) => Promise<void>) =>
    loops.push(
      (async () => {
        for (let i = 0; running(); i++) {
          await fn(i);
          await sleep(lastStatus === 0 ? PACE_MS.afterNoAnswer : paceMs);
        }
      })(),
    );

  // Item 2: every disguised spelling × hint × caller.
  loop(PACE_MS.disguised, async (i) => {
    const caller = callers[i % callers.length]!;
    const path = DISGUISED_TOKEN_PATHS[Math.floor(i / callers.length) % DISGUISED_TOKEN_PATHS.length]!;
    const hint = hints[Math.floor(i / (callers.length * DISGUISED_TOKEN_PATHS.length)) % hints.length]!;
    const from = caller.own ? caller.ip : caller.label.startsWith('address') ? strangerAddress(i) : caller.ip;
    check('disguised token paths × hints', caller, `${path}${hint}`, await send(origin, path + QUERY + hint, from));
  });

  // Item 3: repeated parameters, other methods, a scope as the resource.
  const malformed: { what: string; path: string; method?: string }[] = [
    { what: 'resource twice', path: `/metadata/identity/oauth2/token${QUERY}&resource=https%3A%2F%2Fvault.azure.net` },
    { what: 'api-version twice', path: `/metadata/identity/oauth2/token${QUERY}&api-version=2019-08-01` },
    { what: 'client_id twice', path: `/metadata/identity/oauth2/token${QUERY}&client_id=${victim.identity.clientId}&client_id=${kubelet.clientId}` },
    { what: 'mi_res_id twice', path: `/metadata/identity/oauth2/token${QUERY}&mi_res_id=${encodeURIComponent(victim.identity.id)}&MI_RES_ID=${encodeURIComponent(kubelet.id)}` },
    { what: 'POST', path: `/metadata/identity/oauth2/token${QUERY}`, method: 'POST' },
    { what: 'PUT to a disguised path', path: `/metadata/%69dentity/oauth2/token${QUERY}`, method: 'PUT' },
    { what: 'scope as resource', path: `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://vault.azure.net/.default')}` },
  ];
  loop(PACE_MS.malformed, async (i) => {
    const m = malformed[i % malformed.length]!;
    const caller = callers[Math.floor(i / malformed.length) % callers.length]!;
    check('repeated parameters, other methods, scopes', caller, m.what, await send(origin, m.path, caller.ip, m.method));
  });

  // Item 6: one pod asking for ever new resources (cache-busting).
  loop(PACE_MS.greedy, async (i) => {
    const path = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(`https://resource-${i}.example/`)}`;
    check('one pod, many distinct resources', { label: 'greedy bound pod', ip: greedy.ip, own: greedy.identity }, `resource #${i}`, await send(origin, path, greedy.ip));
  });

  // Item 6: requests from many addresses that are not pods of the node.
  loop(PACE_MS.strangers, async (i) => {
    const caller = { label: 'address that is no pod', ip: strangerAddress(i) };
    check('addresses that are no pod', caller, caller.ip, await send(origin, `/metadata/identity/oauth2/token${QUERY}`, caller.ip));
  });

  // Item 6: many slow connections, each trickling one header byte a second; replaced when the agent closes one.
  const SLOW = 200;
  const url = new URL(origin);
  const sockets = new Set<Socket>();
  const openSlow = (i: number) => {
    if (!running()) return;
    const socket = connect({ host: url.hostname, port: Number(url.port), localAddress: slowAddress(i) });
    socket.unref();
    stats.slowConnections.opened++;
    sockets.add(socket);
    const head = `GET /metadata/identity/oauth2/token${QUERY} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nX-Slow: `;
    let sent = 0;
    const timer = setInterval(() => {
      if (!running()) socket.destroy();
      else if (socket.writable) socket.write(head[sent++ % head.length]!);
    }, 1_000);
    timer.unref();
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(timer);
      sockets.delete(socket);
      if (running()) {
        stats.slowConnections.closedByAgent++;
        setTimeout(() => openSlow(i + SLOW), 500).unref();
      }
    });
  };
  for (let i = 0; i < SLOW; i++) openSlow(i);

  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
      stats.slowConnections.stillOpenAtEnd = sockets.size;
      for (const socket of sockets) socket.destroy();
      return stats;
    },
  };
}
