/**
 * The load generator: a separate process, so the load's own CPU is not charged to the server under test
 * inside one event loop. `concurrency` undici clients (one keep-alive connection each, no pipelining) run
 * request loops for `warmupMs + durationMs`; only requests started inside the measuring window count.
 *
 *   BENCH_SPEC='<LoadSpec JSON>' node --import tsx dev/bench/loadgen.ts   → one LoadResult JSON line on stdout
 *
 * Each client binds one of `localAddresses` (round robin): that is how a loopback client "is" a pod.
 * With `expect`, every 200 body's access_token is decoded and its oid/appid compared with the identity
 * the bound address should get (the soak's wrong-pod check); without it bodies are read and dropped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { Client } from 'undici';
import { summarise } from './load-runs.js';

export interface ExpectedIdentity {
  oid: string;
  appid: string;
}

export interface LoadSpec {
  /** http://host:port */
  origin: string;
  /** Path and query, e.g. /metadata/identity/oauth2/token?api-version=2018-02-01&resource=… */
  path: string;
  headers?: Record<string, string>;
  concurrency: number;
  durationMs: number;
  warmupMs?: number;
  localAddresses?: string[];
  /** Source address → identity its tokens must carry. */
  expect?: Record<string, ExpectedIdentity>;
  /** Per-request timeout; default 10 s. */
  requestTimeoutMs?: number;
  /** One request per connection (`Connection: close`, a new TCP connection each), as CLIs and most SDK processes call IMDS. */
  newConnectionPerRequest?: boolean;
  /** Each client starts a request at most this often (paced, as a process calling now and then); 0: back to back. */
  intervalMs?: number;
}

export interface LatencySummary {
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  concurrency: number;
  /** Completed requests started in the measuring window (any status). */
  requests: number;
  /** Every answered request, warm-up included (what the server did work for). */
  answered: number;
  measuredMs: number;
  /** Requests per second over the measuring window. */
  rps: number;
  latency: LatencySummary;
  statuses: Record<string, number>;
  /** Requests that got no HTTP answer (refused, reset, timeout). */
  errors: number;
  errorSamples: string[];
  /** With `expect`: 200 answers checked, and those whose token named another identity. */
  verified: number;
  wrongIdentity: number;
  wrongSamples: string[];
  /** Per second of the measuring window: [200s, other statuses, no answer]. */
  timeline: [number, number, number][];
  /** The latency histogram (µs), HDR compressed base64, so runs of one point can be merged exactly. */
  histogram: string;
}

function decodeClaims(token: string): Record<string, unknown> {
  const part = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.origin);
  const warmupMs = spec.warmupMs ?? 0;
  const started = performance.now();
  const measureFrom = started + warmupMs;
  let measureTo = measureFrom + spec.durationMs;
  // SIGTERM ends the run early (the soak runs load until it has seen convergence); results still print.
  process.once('SIGTERM', () => (measureTo = Math.min(measureTo, performance.now())));
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const statuses: Record<string, number> = {};
  const timeline: [number, number, number][] = Array.from({ length: Math.ceil(spec.durationMs / 1000) }, () => [0, 0, 0]);
  const result = { requests: 0, answered: 0, errors: 0, verified: 0, wrongIdentity: 0 };
  const errorSamples: string[] = [];
  const wrongSamples: string[] = [];
  const addresses = spec.localAddresses?.length ? spec.localAddresses : [undefined];
  const timeoutMs = spec.requestTimeoutMs ?? 10_000;

  const worker = async (index: number): Promise<void> => {
    const localAddress = addresses[index % addresses.length];
    const expected = localAddress ? spec.expect?.[localAddress] : undefined;
    const client = new Client(url.origin, {
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(localAddress ? { localAddress } : {}),
    });
    try {
      let nextStart = performance.now();
      for (;;) {
        if (spec.intervalMs) {
          const wait = nextStart - performance.now();
          if (wait > 0) await sleep(wait);
          nextStart = Math.max(nextStart + spec.intervalMs, performance.now());
        }
        const t0 = performance.now();
        if (t0 >= measureTo) return;
        const counted = t0 >= measureFrom;
        const second = Math.floor((t0 - measureFrom) / 1000);
        try {
          const res = await client.request({ path: spec.path, method: 'GET', headers: spec.headers ?? {}, ...(spec.newConnectionPerRequest ? { reset: true } : {}) });
          result.answered++;
          let wrong = false;
          if (expected && res.statusCode === 200) {
            const body = (await res.body.json()) as { access_token?: string };
            const claims = decodeClaims(body.access_token ?? '');
            wrong = claims['oid'] !== expected.oid || claims['appid'] !== expected.appid;
            if (counted) {
              result.verified++;
              if (wrong) {
                result.wrongIdentity++;
                if (wrongSamples.length < 10) wrongSamples.push(`${localAddress}: got oid=${String(claims['oid'])} appid=${String(claims['appid'])}, want ${expected.oid}/${expected.appid}`);
              }
            }
          } else {
            await res.body.dump();
          }
          if (!counted) continue;
          histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          result.requests++;
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          const slot = timeline[second];
          if (slot) slot[res.statusCode === 200 ? 0 : 1]++;
        } catch (err) {
          if (counted) {
            result.errors++;
            const slot = timeline[second];
            if (slot) slot[2]++;
            if (errorSamples.length < 10) errorSamples.push(`${localAddress ?? ''}: ${(err as Error).message}`);
          }
          // Refused while a server restarts: back off a little rather than spin.
          await sleep(20);
        }
      }
    } finally {
      await client.close().catch(() => undefined);
    }
  };

  await Promise.all(Array.from({ length: spec.concurrency }, (_, i) => worker(i)));
  const measuredMs = Math.max(1, Math.min(spec.durationMs, measureTo - measureFrom));
  return {
    concurrency: spec.concurrency,
    requests: result.requests,
    answered: result.answered,
    measuredMs: Math.round(measuredMs),
    rps: result.requests / (measuredMs / 1000),
    latency: summarise(histogram),
    statuses,
    errors: result.errors,
    errorSamples,
    verified: result.verified,
    wrongIdentity: result.wrongIdentity,
    wrongSamples,
    timeline: timeline.slice(0, Math.ceil(measuredMs / 1000)),
    histogram: hdr.encodeIntoCompressedBase64(histogram),
  };
}

// This file is only ever a process entry point; the harness imports its types alone (`import type`).
const spec = JSON.parse(process.env['BENCH_SPEC'] ?? '{}') as LoadSpec;
runLoad(spec).then(
  (r) => {
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`loadgen: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
