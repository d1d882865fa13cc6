/**
 * Load results of several runs of one point taken together. P1 measures A and B in alternating runs
 * (B A V V A B) so that a burst of other work on the shared machine falls on every server rather than on one.
 */
import * as hdr from 'hdr-histogram-js';
import type { LatencySummary, LoadResult } from './loadgen.js';

/** Latency percentiles (ms) of an HDR histogram recorded in µs. */
export function summarise(histogram: hdr.Histogram): LatencySummary {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean),
  };
}

/** Several runs of one point as one: counts added, latency from the merged histograms (exact, not averaged percentiles). */
export function mergeRuns(runs: LoadResult[]): LoadResult {
  const [first, ...rest] = runs;
  if (!first) throw new Error('mergeRuns: no runs');
  if (!rest.length) return first;
  const histogram = hdr.decodeFromCompressedBase64(first.histogram);
  for (const r of rest) histogram.add(hdr.decodeFromCompressedBase64(r.histogram));
  const sum = (f: (r: LoadResult) => number) => runs.reduce((n, r) => n + f(r), 0);
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [code, n] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + n;
  const measuredMs = sum((r) => r.measuredMs);
  const requests = sum((r) => r.requests);
  return {
    concurrency: first.concurrency,
    requests,
    answered: sum((r) => r.answered),
    measuredMs,
    rps: requests / (measuredMs / 1000),
    latency: summarise(histogram),
    statuses,
    errors: sum((r) => r.errors),
    errorSamples: runs.flatMap((r) => r.errorSamples).slice(0, 10),
    verified: sum((r) => r.verified),
    wrongIdentity: sum((r) => r.wrongIdentity),
    wrongSamples: runs.flatMap((r) => r.wrongSamples).slice(0, 10),
    timeline: runs.flatMap((r) => r.timeline),
    histogram: hdr.encodeIntoCompressedBase64(histogram),
  };
}
