import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../lib/build-info.js';
import { HotHistogram } from './hot-histogram.js';

/** Outcomes of one token request; the `result` label of podidentity_agent_token_requests_total. */
export type RequestResult =
  | 'issued'
  | 'denied'
  | 'unknown_pod'
  | 'ambiguous_pod'
  | 'not_ready'
  | 'bad_request'
  | 'upstream_error'
  /** A pod no PodIdentity selects, matching an IMDS exception: passed through to the node IMDS. */
  | 'exception'
  /** Past a per-identity issuance cap (429) or a verification read budget (503). */
  | 'rate_limited';

/**
 * Why the agent refused work to protect itself or its upstreams: the `reason` label of
 * podidentity_agent_rejections_total. A fixed set, so the label's cardinality is bounded (never a pod IP).
 */
export type RejectionReason =
  | 'verify_reads_per_source'
  | 'verify_reads_total'
  | 'verify_read_failed'
  | 'cache_behind'
  | 'connections_per_source'
  | 'connections_total'
  | 'connections_strangers'
  | 'request_timeout'
  | 'resources_per_identity'
  | 'exchanges_per_identity';

/** Everything the agent exports, on its own registry (one per agent, so tests don't share state). */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly tokenRequestDuration: HotHistogram<'code' | 'cache' | 'mode'>;
  readonly tokenRequests: Counter<'result'>;
  /**
   * `tokenRequests.inc({ result: 'issued' })` for the cached-token path: a plain addition, added to the
   * counter whenever it is read (prom-client's collect hook), so every export sees every request.
   */
  readonly countIssued: () => void;
  readonly upstreamDuration: Histogram<'upstream' | 'code'>;
  readonly missOverhead: Histogram<'mode'>;
  readonly cacheEntries: Gauge;
  readonly cacheRefreshes: Counter<'outcome'>;
  readonly cacheEvictions: Counter;
  readonly bypassRequests: Counter<'honoured'>;
  readonly verifyReads: Counter<'result'>;
  readonly rejections: Counter<'reason'>;
  readonly openConnections: Gauge;
  readonly iptablesSyncs: Counter;
  readonly iptablesRepairs: Counter;
  readonly iptablesErrors: Counter;
  readonly metadataProxied: Counter<'code'>;
  readonly imdsExceptions: Gauge;
  readonly imdsExceptionErrors: Counter;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics) registerProcessMetrics(this.registry, 'agent');
    this.tokenRequestDuration = new HotHistogram({
      name: 'podidentity_agent_token_request_duration_seconds',
      help: 'Time to answer an IMDS token request, by HTTP code, cache hit/miss and mode.',
      labelNames: ['code', 'cache', 'mode'],
      // Cache hits are sub-millisecond; misses are Azure AD round trips.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    let issued = 0;
    this.countIssued = () => void issued++;
    this.tokenRequests = new Counter({
      name: 'podidentity_agent_token_requests_total',
      help: 'Token requests by result.',
      labelNames: ['result'],
      registers,
      collect() {
        if (issued === 0) return;
        const n = issued;
        issued = 0;
        this.inc({ result: 'issued' }, n);
      },
    });
    this.upstreamDuration = new Histogram({
      name: 'podidentity_agent_upstream_request_duration_seconds',
      help: 'Latency of calls to Azure AD (aad) and the node IMDS (imds), by upstream and HTTP code.',
      labelNames: ['upstream', 'code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.missOverhead = new Histogram({
      name: 'podidentity_agent_miss_overhead_seconds',
      help: "The agent's own time on a cache miss that it answered with a new token: the request's duration minus its upstream round trips (TokenRequest, Azure AD, node IMDS), by mode.",
      labelNames: ['mode'],
      // The goal is 2 ms at p99: a bound there makes "met" exact, the finer ones below place the median.
      buckets: [0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    });
    this.cacheEntries = new Gauge({ name: 'podidentity_agent_cache_entries', help: 'Tokens in the cache.', registers });
    this.cacheRefreshes = new Counter({ name: 'podidentity_agent_cache_refreshes_total', help: 'Background refresh-ahead of cached tokens, by outcome.', labelNames: ['outcome'], registers });
    this.cacheEvictions = new Counter({ name: 'podidentity_agent_cache_evictions_total', help: 'Tokens evicted because the cache was full.', registers });
    this.bypassRequests = new Counter({ name: 'podidentity_agent_cache_bypass_requests_total', help: 'bypass_cache=true requests, by whether the rate limit let them through.', labelNames: ['honoured'], registers });
    this.verifyReads = new Counter({
      name: 'podidentity_agent_pod_verify_reads_total',
      help: 'Reads of one pod from the API server that verify a new connection, by result (live, gone, error).',
      labelNames: ['result'],
      registers,
    });
    this.rejections = new Counter({ name: 'podidentity_agent_rejections_total', help: 'Work refused by a flooding or exhaustion limit, by reason.', labelNames: ['reason'], registers });
    this.openConnections = new Gauge({ name: 'podidentity_agent_open_connections', help: 'Open connections to the IMDS listener.', registers });
    this.iptablesSyncs = new Counter({ name: 'podidentity_agent_iptables_syncs_total', help: 'Interception rule checks.', registers });
    this.iptablesRepairs = new Counter({ name: 'podidentity_agent_iptables_repairs_total', help: 'Interception rules found drifted and rewritten.', registers });
    this.iptablesErrors = new Counter({ name: 'podidentity_agent_iptables_errors_total', help: 'Failed iptables checks or writes.', registers });
    this.metadataProxied = new Counter({ name: 'podidentity_agent_metadata_proxy_requests_total', help: 'Non-token IMDS requests proxied to the node IMDS, by code.', labelNames: ['code'], registers });
    this.imdsExceptions = new Gauge({ name: 'podidentity_agent_imds_exceptions', help: 'IMDS exception entries in force (0 when the ConfigMap is absent or malformed).', registers });
    this.imdsExceptionErrors = new Counter({ name: 'podidentity_agent_imds_exceptions_errors_total', help: 'Versions of the IMDS exceptions ConfigMap rejected as malformed (no exceptions honoured).', registers });
  }
}
