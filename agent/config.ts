import { MODES, type Mode } from '../lib/api/types.js';
import { ConfigError } from '../lib/config/errors.js';
import { parseFlags as parseSharedFlags, usageLines, type FlagSpecs } from '../lib/config/flags.js';
import { Settings, type Deprecation } from '../lib/config/settings.js';
import { parseConfigMapRef } from './attribution/exceptions.js';

/** How the agent runs. Every field comes from a flag (or its env variable) and is validated at start. */
export interface AgentConfig {
  nodeName: string;
  /** The node's own IP: the DNAT target and the address the IMDS listener binds. */
  nodeIp: string;
  /** Address the IMDS listener binds; default the node IP. */
  listenAddress: string;
  listenPort: number;
  metricsAddress: string;
  metricsPort: number;
  /** Used when neither the PodIdentity's status nor its spec names a mode. */
  defaultMode: Mode;
  /** Azure AD authority host, e.g. https://login.microsoftonline.com. */
  authorityHost: string;
  /** The node's real IMDS (Node mode tokens and the metadata proxy). */
  upstreamImds: string;
  /** How long a request waits for a matching PodIdentity that is not Ready yet, before a 503. */
  notReadyWaitMs: number;
  /** Bound on one verification read (a GET of one pod) to the API server. */
  readThroughTimeoutMs: number;
  /** How long a new connection may wait for the pod cache to catch up (or for a read budget) before 400/503. */
  verifyWaitMs: number;
  /** Verification reads (API server GETs) one source address, and the whole agent, may start per window. */
  verifyReadsPerSource: number;
  verifyReadsTotal: number;
  verifyReadWindowMs: number;
  /** Open connections to the IMDS listener, in total and from one source address. */
  maxConnections: number;
  maxConnectionsPerSource: number;
  /** Open IMDS connections, together, from addresses no pod of this node claims (pods of other nodes, hosts). */
  maxStrangerConnections: number;
  /** Node http server timeouts: the whole header block, the whole request, and an idle keep-alive connection. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Per identity (and service account, for Federated): distinct resources and upstream token calls per window. */
  maxResourcesPerIdentity: number;
  maxExchangesPerIdentity: number;
  issuanceWindowMs: number;
  upstreamTimeoutMs: number;
  cacheMaxEntries: number;
  /** A cached token is served until this long before it expires. */
  cacheSafetyMarginSeconds: number;
  /** A cached token used within this window before the safety margin is refreshed in the background. */
  cacheRefreshAheadSeconds: number;
  /** At most one `bypass_cache=true` honoured per identity and resource per this interval. */
  bypassMinIntervalMs: number;
  iptablesMode: 'auto' | 'nft' | 'legacy';
  /** Explicit iptables binary prefix (`iptables-nft`), overriding the mode. */
  iptablesBinary?: string;
  /** Also DNAT node-local (OUTPUT) traffic: hostNetwork pods are then refused instead of reaching IMDS. */
  interceptHostNetwork: boolean;
  /** With interceptHostNetwork: traffic from processes with this uid / gid is left alone (the agent itself). */
  excludeUid?: number;
  excludeGid?: number;
  driftCheckIntervalMs: number;
  /** Proxy other /metadata paths (instance, scheduledevents…) to the upstream IMDS; off = 403. */
  metadataProxy: boolean;
  /** Manage iptables at all (off only for tests that run the HTTP server alone). */
  manageIptables: boolean;
  /**
   * `<namespace>/<name>` of the ConfigMap whose `exceptions.yaml` lists pods passed through to the node
   * IMDS (migrated AzurePodIdentityExceptions). Absent: the feature is off.
   */
  exceptionsConfigMap?: { namespace: string; name: string };
  logLevel: string;
  kubeconfig?: string;
  /** Deprecated spellings given; main logs each once. */
  deprecations: Deprecation[];
}

const IPTABLES_MODES = ['auto', 'nft', 'legacy'] as const;
const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

export { ConfigError };
export type { Deprecation };

/**
 * Every flag, its default and (by the shared convention, `POD_IDENTITY_<FLAG>`) its env variable. The
 * variables before that convention, and durations as bare numbers, keep working for one release with a warning.
 */
export const FLAGS: FlagSpecs = {
  'node-name': { deprecatedEnv: 'NODE_NAME', help: 'this node (spec.nodeName of the pods it serves); required' },
  'node-ip': { deprecatedEnv: 'NODE_IP', help: "this node's IP (DNAT target); required" },
  'listen-address': { deprecatedEnv: 'LISTEN_ADDRESS', help: 'IMDS listener address (default: --node-ip)' },
  'listen-port': { deprecatedEnv: 'LISTEN_PORT', default: '8775', help: 'IMDS listener port' },
  'metrics-address': { deprecatedEnv: 'METRICS_ADDRESS', default: '0.0.0.0', help: 'metrics/health listener address' },
  'metrics-port': { deprecatedEnv: 'METRICS_PORT', default: '8776', help: '/metrics, /healthz, /readyz port' },
  'default-mode': { deprecatedEnv: 'DEFAULT_MODE', default: 'Federated', help: 'Federated or Node, when a PodIdentity names none' },
  'authority-host': { env: 'AZURE_AUTHORITY_HOST', default: 'https://login.microsoftonline.com', help: 'Azure AD authority host (https)' },
  'upstream-imds': { deprecatedEnv: 'UPSTREAM_IMDS', default: 'http://169.254.169.254', help: 'the real IMDS' },
  'not-ready-wait': { deprecatedEnv: 'NOT_READY_WAIT_MS', bareNumberUnit: 'ms', default: '3s', help: 'how long a request waits for a PodIdentity to become Ready before 503' },
  'read-through-timeout': { deprecatedEnv: 'READ_THROUGH_TIMEOUT_MS', bareNumberUnit: 'ms', default: '1s', help: 'bound on one verification read (GET of one pod) before 503' },
  'verify-wait': { deprecatedEnv: 'VERIFY_WAIT', default: '1s', help: 'how long a new connection waits for the pod cache to catch up or for a read budget' },
  'verify-reads-per-source': { deprecatedEnv: 'VERIFY_READS_PER_SOURCE', default: '100', help: 'verification reads one source address may cause per --verify-read-window' },
  'verify-reads-total': { deprecatedEnv: 'VERIFY_READS_TOTAL', default: '500', help: 'verification reads the agent may make per --verify-read-window' },
  'verify-read-window': { deprecatedEnv: 'VERIFY_READ_WINDOW', default: '1s', help: 'window of the verification read budgets' },
  'max-connections': { deprecatedEnv: 'MAX_CONNECTIONS', default: '1000', help: 'open IMDS connections in total; more are closed at once' },
  'max-connections-per-source': { deprecatedEnv: 'MAX_CONNECTIONS_PER_SOURCE', default: '100', help: 'open IMDS connections from one source address' },
  'max-stranger-connections': { deprecatedEnv: 'MAX_STRANGER_CONNECTIONS', default: '100', help: 'open IMDS connections, together, from addresses no pod of this node claims (on top of --max-connections)' },
  'headers-timeout': { deprecatedEnv: 'HEADERS_TIMEOUT', default: '5s', help: 'time a client has to send its request headers' },
  'request-timeout': { deprecatedEnv: 'REQUEST_TIMEOUT', default: '10s', help: 'time a client has to send its whole request' },
  'keep-alive-timeout': { deprecatedEnv: 'KEEP_ALIVE_TIMEOUT', default: '5s', help: 'idle time before a keep-alive connection is closed' },
  'max-resources-per-identity': { deprecatedEnv: 'MAX_RESOURCES_PER_IDENTITY', default: '20', help: 'distinct resources one identity may be issued tokens for per --issuance-window (then 429)' },
  'max-exchanges-per-identity': { deprecatedEnv: 'MAX_EXCHANGES_PER_IDENTITY', default: '60', help: 'upstream token requests (Azure AD / node IMDS) per identity per --issuance-window (then 429)' },
  'issuance-window': { deprecatedEnv: 'ISSUANCE_WINDOW', default: '10m', help: 'window of the per-identity issuance caps' },
  'upstream-timeout': { deprecatedEnv: 'UPSTREAM_TIMEOUT_MS', bareNumberUnit: 'ms', default: '10s', help: 'bound on one Azure AD / IMDS call' },
  'cache-max-entries': { deprecatedEnv: 'CACHE_MAX_ENTRIES', default: '2000', help: 'tokens kept (LRU beyond that)' },
  'cache-safety-margin': { deprecatedEnv: 'CACHE_SAFETY_MARGIN_SECONDS', bareNumberUnit: 's', default: '5m', help: 'how long before expiry a token stops being served' },
  'cache-refresh-ahead': { deprecatedEnv: 'CACHE_REFRESH_AHEAD_SECONDS', bareNumberUnit: 's', default: '10m', help: 'how long before the safety margin a used token is refreshed' },
  'bypass-min-interval': { deprecatedEnv: 'BYPASS_MIN_INTERVAL_MS', bareNumberUnit: 'ms', default: '5s', help: 'time between honoured bypass_cache=true per identity+resource' },
  'iptables-mode': { deprecatedEnv: 'IPTABLES_MODE', default: 'auto', help: 'auto, nft or legacy' },
  'iptables-binary': { deprecatedEnv: 'IPTABLES_BINARY', help: 'explicit iptables binary (its -save/-restore are used)' },
  'intercept-host-network': { deprecatedEnv: 'INTERCEPT_HOST_NETWORK', boolean: true, default: 'false', help: 'also redirect node-local (OUTPUT) IMDS traffic' },
  'exclude-uid': { deprecatedEnv: 'EXCLUDE_UID', help: 'with --intercept-host-network: uid whose traffic is not redirected' },
  'exclude-gid': { deprecatedEnv: 'EXCLUDE_GID', help: 'with --intercept-host-network: gid whose traffic is not redirected' },
  'drift-check-interval': { deprecatedEnv: 'DRIFT_CHECK_INTERVAL_MS', bareNumberUnit: 'ms', default: '30s', help: 'time between iptables drift checks' },
  'metadata-proxy': { deprecatedEnv: 'METADATA_PROXY', boolean: true, default: 'true', help: 'proxy the allow-listed, non-credential metadata paths (agent/README.md) to the upstream IMDS; never /metadata/identity or /metadata/attested' },
  'manage-iptables': { deprecatedEnv: 'MANAGE_IPTABLES', boolean: true, default: 'true', help: 'install and check interception rules' },
  'exceptions-configmap': { deprecatedEnv: 'EXCEPTIONS_CONFIGMAP', help: '<namespace>/<name> of the IMDS exceptions ConfigMap (default: none, feature off)' },
  'log-level': { deprecatedEnv: 'LOG_LEVEL', default: 'info', help: 'error, warn, info or debug' },
  kubeconfig: { env: 'KUBECONFIG', help: 'kubeconfig path (default: in-cluster)' },
};

/** The agent's flags as given (for `agent uninstall`, which needs only a few of them). */
export function parseFlags(argv: string[]): Map<string, string> {
  return parseSharedFlags(argv, FLAGS);
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const s = Settings.fromArgv(FLAGS, argv, env);
  const nodeName = s.required('node-name');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) s.fail('node-name', `not a valid node name: "${nodeName}"`);
  const nodeIp = s.ipv4('node-ip');
  const exceptionsRaw = s.raw('exceptions-configmap');
  const exceptionsConfigMap = exceptionsRaw === undefined ? undefined : parseConfigMapRef(exceptionsRaw);
  if (exceptionsRaw !== undefined && !exceptionsConfigMap) s.fail('exceptions-configmap', `must be <namespace>/<name>, got "${exceptionsRaw}"`);

  const config: AgentConfig = {
    nodeName,
    nodeIp,
    listenAddress: s.ipv4('listen-address', nodeIp),
    listenPort: s.int('listen-port', 1, 65535),
    metricsAddress: s.ipv4('metrics-address'),
    metricsPort: s.int('metrics-port', 1, 65535),
    defaultMode: s.oneOf('default-mode', MODES),
    authorityHost: s.url('authority-host', ['https:']),
    upstreamImds: s.url('upstream-imds', ['http:', 'https:']),
    notReadyWaitMs: s.duration('not-ready-wait', 0, 60_000),
    readThroughTimeoutMs: s.duration('read-through-timeout', 50, 10_000),
    verifyWaitMs: s.duration('verify-wait', 0, 30_000),
    verifyReadsPerSource: s.int('verify-reads-per-source', 1, 1_000_000),
    verifyReadsTotal: s.int('verify-reads-total', 1, 1_000_000),
    verifyReadWindowMs: s.duration('verify-read-window', 10, 3_600_000),
    maxConnections: s.int('max-connections', 1, 1_000_000),
    maxConnectionsPerSource: s.int('max-connections-per-source', 1, 1_000_000),
    maxStrangerConnections: s.int('max-stranger-connections', 1, 1_000_000),
    headersTimeoutMs: s.duration('headers-timeout', 100, 300_000),
    requestTimeoutMs: s.duration('request-timeout', 100, 300_000),
    keepAliveTimeoutMs: s.duration('keep-alive-timeout', 100, 300_000),
    maxResourcesPerIdentity: s.int('max-resources-per-identity', 1, 1_000_000),
    maxExchangesPerIdentity: s.int('max-exchanges-per-identity', 1, 1_000_000),
    issuanceWindowMs: s.duration('issuance-window', 1000, 86_400_000),
    upstreamTimeoutMs: s.duration('upstream-timeout', 100, 120_000),
    cacheMaxEntries: s.int('cache-max-entries', 1, 1_000_000),
    cacheSafetyMarginSeconds: wholeSeconds(s, 'cache-safety-margin'),
    cacheRefreshAheadSeconds: wholeSeconds(s, 'cache-refresh-ahead'),
    bypassMinIntervalMs: s.duration('bypass-min-interval', 0, 3_600_000),
    iptablesMode: s.oneOf('iptables-mode', IPTABLES_MODES),
    iptablesBinary: s.raw('iptables-binary'),
    interceptHostNetwork: s.bool('intercept-host-network'),
    excludeUid: s.optionalInt('exclude-uid', 0, 2 ** 31 - 1),
    excludeGid: s.optionalInt('exclude-gid', 0, 2 ** 31 - 1),
    driftCheckIntervalMs: s.duration('drift-check-interval', 100, 3_600_000),
    metadataProxy: s.bool('metadata-proxy'),
    manageIptables: s.bool('manage-iptables'),
    exceptionsConfigMap,
    logLevel: s.oneOf('log-level', LOG_LEVELS),
    kubeconfig: s.raw('kubeconfig'),
    deprecations: s.deprecations,
  };
  const overlap = config.listenAddress === config.metricsAddress || [config.listenAddress, config.metricsAddress].includes('0.0.0.0');
  if (config.listenPort === config.metricsPort && overlap) s.fail('metrics-port', 'must differ from --listen-port');
  if (config.headersTimeoutMs > config.requestTimeoutMs) s.fail('headers-timeout', 'must not be longer than --request-timeout');
  if (config.interceptHostNetwork && config.excludeUid === undefined && config.excludeGid === undefined) {
    s.fail('intercept-host-network', "needs --exclude-uid or --exclude-gid, so the agent's own calls to the real IMDS are not redirected to itself");
  }
  return config;
}

/** The token cache counts in whole seconds; its settings were seconds before they were durations. */
function wholeSeconds(s: Settings, flag: string): number {
  const ms = s.duration(flag, 0, 3_600_000);
  if (ms % 1000 !== 0) s.fail(flag, `must be whole seconds, got ${ms}ms`);
  return ms / 1000;
}

/** `agent uninstall` needs only the iptables settings, from the same flags and variables as `run`. */
export function loadUninstallConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Pick<AgentConfig, 'iptablesMode' | 'iptablesBinary' | 'logLevel' | 'deprecations'> {
  const s = Settings.fromArgv(FLAGS, argv, env);
  return { iptablesMode: s.oneOf('iptables-mode', IPTABLES_MODES), iptablesBinary: s.raw('iptables-binary'), logLevel: s.oneOf('log-level', LOG_LEVELS), deprecations: s.deprecations };
}

export function usage(): string {
  return ['usage: agent [run|uninstall|version|help] [flags]', '', '  -h, --help                     this text', '  --version                      the version, Node.js version and commit', ...usageLines(FLAGS)].join('\n');
}
