/**
 * P2's probe, a separate process like the load generator.
 *
 * mode "misses": N rounds, each of
 *   - direct: the upstream work of one miss done by a plain client — a TokenRequest for the pod's service
 *     account (bound to the pod) and the federated token exchange with Azure AD — the baseline;
 *   - agent: one GET to the agent for a resource it has never issued (a guaranteed cache miss).
 * Rounds interleave the two so both see the same machine noise. Overhead = agent − direct.
 *
 * mode "single-flight": `concurrency` connections from the pod's address send the first request for one
 * identity and resource at the same moment.
 *
 *   BENCH_SPEC='<ProbeSpec JSON>' node --import tsx dev/bench/miss-probe.ts   → one JSON line on stdout
 */
import { Client } from 'undici';
import type { LatencySummary } from './loadgen.js';

export interface ProbeSpec {
  mode: 'misses' | 'single-flight';
  agentOrigin: string;
  podIp: string;
  /** Unique per run, so resources never repeat across invocations. */
  prefix: string;
  samples: number;
  concurrency: number;
  kube: { server: string; token: string; caPem: string };
  aad: { authorityHost: string; tenantId: string; clientId: string; caPem: string };
  pod: { namespace: string; serviceAccount: string; name: string; uid: string };
}

export interface MissResult {
  agent: LatencySummary;
  direct: LatencySummary;
  /** Per round, agent − direct (ms). */
  overhead: LatencySummary;
  agentStatuses: Record<string, number>;
  directFailures: number;
  discarded: number;
}

export interface SingleFlightResult {
  statuses: Record<string, number>;
  errors: number;
  wallMs: number;
}

const tokenPath = (resource: string) => `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`;

/** Exact nearest-rank percentiles of raw samples (few enough to sort; differences may be negative). */
function summarise(values: number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return { p50: r(at(50)), p90: r(at(90)), p99: r(at(99)), p999: r(at(99.9)), max: r(sorted[sorted.length - 1] ?? 0), mean: r(values.reduce((a, b) => a + b, 0) / Math.max(1, values.length)) };
}

async function misses(spec: ProbeSpec): Promise<MissResult> {
  const agent = new Client(spec.agentOrigin, { localAddress: spec.podIp, keepAliveTimeout: 60_000 });
  const kube = new Client(spec.kube.server, { connect: { ca: spec.kube.caPem }, keepAliveTimeout: 60_000 });
  const aad = new Client(spec.aad.authorityHost, { connect: { ca: spec.aad.caPem }, keepAliveTimeout: 60_000 });
  const agentMs: number[] = [];
  const directMs: number[] = [];
  const overhead: number[] = [];
  const statuses: Record<string, number> = {};
  let directFailures = 0;
  // The first rounds open connections and warm code paths on both sides.
  const discard = Math.min(3, Math.floor(spec.samples / 4));
  try {
    for (let i = 0; i < spec.samples + discard; i++) {
      const t0 = performance.now();
      let ok = true;
      const tr = await kube.request({
        method: 'POST',
        path: `/api/v1/namespaces/${spec.pod.namespace}/serviceaccounts/${spec.pod.serviceAccount}/token`,
        headers: { authorization: `Bearer ${spec.kube.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: ['api://AzureADTokenExchange'], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: spec.pod.name, uid: spec.pod.uid } },
        }),
      });
      const assertion = ((await tr.body.json()) as { status?: { token?: string } }).status?.token ?? '';
      if (tr.statusCode !== 201 || !assertion) ok = false;
      const form = new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: spec.aad.clientId,
        scope: `https://${spec.prefix}-direct-${i}.example/.default`,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      });
      const ex = await aad.request({ method: 'POST', path: `/${spec.aad.tenantId}/oauth2/v2.0/token`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      await ex.body.dump();
      if (ex.statusCode !== 200) ok = false;
      const direct = performance.now() - t0;

      const t1 = performance.now();
      const res = await agent.request({ method: 'GET', path: tokenPath(`https://${spec.prefix}-miss-${i}.example`), headers: { Metadata: 'true' } });
      await res.body.dump();
      const viaAgent = performance.now() - t1;
      if (i < discard) continue;
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (!ok) directFailures++;
      agentMs.push(viaAgent);
      directMs.push(direct);
      overhead.push(viaAgent - direct);
    }
  } finally {
    await Promise.all([agent.close(), kube.close(), aad.close()]);
  }
  return { agent: summarise(agentMs), direct: summarise(directMs), overhead: summarise(overhead), agentStatuses: statuses, directFailures, discarded: discard };
}

async function singleFlight(spec: ProbeSpec): Promise<SingleFlightResult> {
  const clients = Array.from({ length: spec.concurrency }, () => new Client(spec.agentOrigin, { localAddress: spec.podIp, keepAliveTimeout: 60_000 }));
  const statuses: Record<string, number> = {};
  let errors = 0;
  try {
    // Connect every client first, so the first requests really leave together.
    await Promise.all(clients.map((c) => c.request({ method: 'GET', path: '/', headers: { Metadata: 'true' } }).then((r) => r.body.dump()).catch(() => undefined)));
    const path = tokenPath(`https://${spec.prefix}-single-flight.example`);
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c) => {
        try {
          const res = await c.request({ method: 'GET', path, headers: { Metadata: 'true' } });
          await res.body.dump();
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        } catch {
          errors++;
        }
      }),
    );
    return { statuses, errors, wallMs: Math.round((performance.now() - t0) * 1000) / 1000 };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

// Only ever a process entry point; the harness imports its types alone.
const spec = JSON.parse(process.env['BENCH_SPEC'] ?? '{}') as ProbeSpec;
(spec.mode === 'misses' ? misses(spec) : singleFlight(spec)).then(
  (r) => {
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`miss-probe: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
