import { isIP } from 'node:net';
import { MODES, type Mode } from '../lib/api/types.js';
import { parseDuration } from '../lib/duration.js';
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
}

export class ConfigError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`--${flag}: ${message}`);
    this.name = 'ConfigError';
  }
}

interface FlagSpec {
  env: string;
  default?: string;
  help: string;
}

/** Every flag, its env variable and default. `--help` prints this table. */
export const FLAGS: Record<string, FlagSpec> = {
  'node-name': { env: 'NODE_NAME', help: 'this node (spec.nodeName of the pods it serves); required' },
  'node-ip': { env: 'NODE_IP', help: "this node's IP (DNAT target); required" },
  'listen-address': { env: 'LISTEN_ADDRESS', help: 'IMDS listener address (default: --node-ip)' },
  'listen-port': { env: 'LISTEN_PORT', default: '8775', help: 'IMDS listener port' },
  'metrics-address': { env: 'METRICS_ADDRESS', default: '0.0.0.0', help: 'metrics/health listener address' },
  'metrics-port': { env: 'METRICS_PORT', default: '8776', help: '/metrics, /healthz, /readyz port' },
  'default-mode': { env: 'DEFAULT_MODE', default: 'Federated', help: 'Federated or Node, when a PodIdentity names none' },
  'authority-host': { env: 'AZURE_AUTHORITY_HOST', default: 'https://login.microsoftonline.com', help: 'Azure AD authority host (https)' },
  'upstream-imds': { env: 'UPSTREAM_IMDS', default: 'http://169.254.169.254', help: 'the real IMDS' },
  'not-ready-wait': { env: 'NOT_READY_WAIT_MS', default: '3000', help: 'ms to wait for a PodIdentity to become Ready before 503' },
  'read-through-timeout': { env: 'READ_THROUGH_TIMEOUT_MS', default: '1000', help: 'ms for one verification read (GET of one pod) before 503' },
  'verify-wait': { env: 'VERIFY_WAIT', default: '1s', help: 'how long a new connection waits for the pod cache to catch up or for a read budget' },
  'verify-reads-per-source': { env: 'VERIFY_READS_PER_SOURCE', default: '100', help: 'verification reads one source address may cause per --verify-read-window' },
  'verify-reads-total': { env: 'VERIFY_READS_TOTAL', default: '500', help: 'verification reads the agent may make per --verify-read-window' },
  'verify-read-window': { env: 'VERIFY_READ_WINDOW', default: '1s', help: 'window of the verification read budgets' },
  'max-connections': { env: 'MAX_CONNECTIONS', default: '1000', help: 'open IMDS connections in total; more are closed at once' },
  'max-connections-per-source': { env: 'MAX_CONNECTIONS_PER_SOURCE', default: '100', help: 'open IMDS connections from one source address' },
  'max-stranger-connections': { env: 'MAX_STRANGER_CONNECTIONS', default: '100', help: 'open IMDS connections, together, from addresses no pod of this node claims (on top of --max-connections)' },
  'headers-timeout': { env: 'HEADERS_TIMEOUT', default: '5s', help: 'time a client has to send its request headers' },
  'request-timeout': { env: 'REQUEST_TIMEOUT', default: '10s', help: 'time a client has to send its whole request' },
  'keep-alive-timeout': { env: 'KEEP_ALIVE_TIMEOUT', default: '5s', help: 'idle time before a keep-alive connection is closed' },
  'max-resources-per-identity': { env: 'MAX_RESOURCES_PER_IDENTITY', default: '20', help: 'distinct resources one identity may be issued tokens for per --issuance-window (then 429)' },
  'max-exchanges-per-identity': { env: 'MAX_EXCHANGES_PER_IDENTITY', default: '60', help: 'upstream token requests (Azure AD / node IMDS) per identity per --issuance-window (then 429)' },
  'issuance-window': { env: 'ISSUANCE_WINDOW', default: '10m', help: 'window of the per-identity issuance caps' },
  'upstream-timeout': { env: 'UPSTREAM_TIMEOUT_MS', default: '10000', help: 'ms for one Azure AD / IMDS call' },
  'cache-max-entries': { env: 'CACHE_MAX_ENTRIES', default: '2000', help: 'tokens kept (LRU beyond that)' },
  'cache-safety-margin': { env: 'CACHE_SAFETY_MARGIN_SECONDS', default: '300', help: 's before expiry a token stops being served' },
  'cache-refresh-ahead': { env: 'CACHE_REFRESH_AHEAD_SECONDS', default: '600', help: 's before the safety margin a used token is refreshed' },
  'bypass-min-interval': { env: 'BYPASS_MIN_INTERVAL_MS', default: '5000', help: 'ms between honoured bypass_cache=true per identity+resource' },
  'iptables-mode': { env: 'IPTABLES_MODE', default: 'auto', help: 'auto, nft or legacy' },
  'iptables-binary': { env: 'IPTABLES_BINARY', help: 'explicit iptables binary (its -save/-restore are used)' },
  'intercept-host-network': { env: 'INTERCEPT_HOST_NETWORK', default: 'false', help: 'also redirect node-local (OUTPUT) IMDS traffic' },
  'exclude-uid': { env: 'EXCLUDE_UID', help: 'with --intercept-host-network: uid whose traffic is not redirected' },
  'exclude-gid': { env: 'EXCLUDE_GID', help: 'with --intercept-host-network: gid whose traffic is not redirected' },
  'drift-check-interval': { env: 'DRIFT_CHECK_INTERVAL_MS', default: '30000', help: 'ms between iptables drift checks' },
  'metadata-proxy': { env: 'METADATA_PROXY', default: 'true', help: 'proxy the allow-listed, non-credential metadata paths (agent/README.md) to the upstream IMDS; never /metadata/identity or /metadata/attested' },
  'manage-iptables': { env: 'MANAGE_IPTABLES', default: 'true', help: 'install and check interception rules' },
  'exceptions-configmap': { env: 'EXCEPTIONS_CONFIGMAP', help: '<namespace>/<name> of the IMDS exceptions ConfigMap (default: none, feature off)' },
  'log-level': { env: 'LOG_LEVEL', default: 'info', help: 'error, warn, info or debug' },
  kubeconfig: { env: 'KUBECONFIG', help: 'kubeconfig path (default: in-cluster)' },
};

/** Splits `--flag=value`, `--flag value` and bare boolean `--flag`. Unknown flags are errors. */
export function parseFlags(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new ConfigError(arg, 'unexpected argument');
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (!(name in FLAGS)) throw new ConfigError(name, 'unknown flag');
    if (eq >= 0) out.set(name, arg.slice(eq + 1));
    else {
      const next = argv[i + 1];
      const isBool = FLAGS[name]?.default === 'true' || FLAGS[name]?.default === 'false';
      if (isBool && (next === undefined || next.startsWith('--'))) out.set(name, 'true');
      else if (next === undefined) throw new ConfigError(name, 'needs a value');
      else {
        out.set(name, next);
        i++;
      }
    }
  }
  return out;
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const flags = parseFlags(argv);
  const raw = (name: string): string | undefined => {
    const spec = FLAGS[name]!;
    const v = flags.get(name) ?? env[spec.env] ?? spec.default;
    return v === '' ? undefined : v;
  };
  const required = (name: string): string => {
    const v = raw(name);
    if (v === undefined) throw new ConfigError(name, `required (or env ${FLAGS[name]!.env})`);
    return v;
  };
  const int = (name: string, min: number, max: number): number => {
    const v = required(name);
    if (!/^\d+$/.test(v)) throw new ConfigError(name, `must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  };
  const optInt = (name: string): number | undefined => (raw(name) === undefined ? undefined : int(name, 0, 2 ** 31 - 1));
  const bool = (name: string): boolean => {
    const v = required(name).toLowerCase();
    if (v === 'true' || v === '1') return true;
    if (v === 'false' || v === '0') return false;
    throw new ConfigError(name, `must be true or false, got "${v}"`);
  };
  const ip = (name: string, fallback?: string): string => {
    const v = raw(name) ?? fallback;
    if (v === undefined) throw new ConfigError(name, `required (or env ${FLAGS[name]!.env})`);
    if (isIP(v) !== 4) throw new ConfigError(name, `must be an IPv4 address, got "${v}"`);
    return v;
  };
  const duration = (name: string, minMs: number, maxMs: number): number => {
    const v = required(name);
    const ms = parseDuration(v);
    if (ms === undefined) throw new ConfigError(name, `must be a duration such as 500ms, 15s or 10m, got "${v}"`);
    if (ms < minMs || ms > maxMs) throw new ConfigError(name, `must be between ${minMs}ms and ${maxMs}ms, got "${v}"`);
    return ms;
  };
  const url = (name: string, protocols: string[]): string => {
    const v = required(name);
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      throw new ConfigError(name, `must be a URL, got "${v}"`);
    }
    if (!protocols.includes(parsed.protocol)) throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${v}"`);
    return v.replace(/\/+$/, '');
  };

  const nodeName = required('node-name');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) throw new ConfigError('node-name', `not a valid node name: "${nodeName}"`);
  const nodeIp = ip('node-ip');
  const defaultMode = required('default-mode');
  if (!(MODES as readonly string[]).includes(defaultMode)) throw new ConfigError('default-mode', `must be one of ${MODES.join(', ')}, got "${defaultMode}"`);
  const iptablesMode = required('iptables-mode');
  if (!['auto', 'nft', 'legacy'].includes(iptablesMode)) throw new ConfigError('iptables-mode', `must be auto, nft or legacy, got "${iptablesMode}"`);
  const exceptionsRaw = raw('exceptions-configmap');
  const exceptionsConfigMap = exceptionsRaw === undefined ? undefined : parseConfigMapRef(exceptionsRaw);
  if (exceptionsRaw !== undefined && !exceptionsConfigMap) throw new ConfigError('exceptions-configmap', `must be <namespace>/<name>, got "${exceptionsRaw}"`);
  const logLevel = required('log-level');
  if (!['error', 'warn', 'info', 'debug'].includes(logLevel)) throw new ConfigError('log-level', `must be error, warn, info or debug, got "${logLevel}"`);

  const config: AgentConfig = {
    nodeName,
    nodeIp,
    listenAddress: ip('listen-address', nodeIp),
    listenPort: int('listen-port', 1, 65535),
    metricsAddress: ip('metrics-address'),
    metricsPort: int('metrics-port', 1, 65535),
    defaultMode: defaultMode as Mode,
    authorityHost: url('authority-host', ['https:']),
    upstreamImds: url('upstream-imds', ['http:', 'https:']),
    notReadyWaitMs: int('not-ready-wait', 0, 60_000),
    readThroughTimeoutMs: int('read-through-timeout', 50, 10_000),
    verifyWaitMs: duration('verify-wait', 0, 30_000),
    verifyReadsPerSource: int('verify-reads-per-source', 1, 1_000_000),
    verifyReadsTotal: int('verify-reads-total', 1, 1_000_000),
    verifyReadWindowMs: duration('verify-read-window', 10, 3_600_000),
    maxConnections: int('max-connections', 1, 1_000_000),
    maxConnectionsPerSource: int('max-connections-per-source', 1, 1_000_000),
    maxStrangerConnections: int('max-stranger-connections', 1, 1_000_000),
    headersTimeoutMs: duration('headers-timeout', 100, 300_000),
    requestTimeoutMs: duration('request-timeout', 100, 300_000),
    keepAliveTimeoutMs: duration('keep-alive-timeout', 100, 300_000),
    maxResourcesPerIdentity: int('max-resources-per-identity', 1, 1_000_000),
    maxExchangesPerIdentity: int('max-exchanges-per-identity', 1, 1_000_000),
    issuanceWindowMs: duration('issuance-window', 1000, 86_400_000),
    upstreamTimeoutMs: int('upstream-timeout', 100, 120_000),
    cacheMaxEntries: int('cache-max-entries', 1, 1_000_000),
    cacheSafetyMarginSeconds: int('cache-safety-margin', 0, 3600),
    cacheRefreshAheadSeconds: int('cache-refresh-ahead', 0, 3600),
    bypassMinIntervalMs: int('bypass-min-interval', 0, 3_600_000),
    iptablesMode: iptablesMode as AgentConfig['iptablesMode'],
    iptablesBinary: raw('iptables-binary'),
    interceptHostNetwork: bool('intercept-host-network'),
    excludeUid: optInt('exclude-uid'),
    excludeGid: optInt('exclude-gid'),
    driftCheckIntervalMs: int('drift-check-interval', 100, 3_600_000),
    metadataProxy: bool('metadata-proxy'),
    manageIptables: bool('manage-iptables'),
    exceptionsConfigMap,
    logLevel,
    kubeconfig: raw('kubeconfig'),
  };
  const overlap = config.listenAddress === config.metricsAddress || [config.listenAddress, config.metricsAddress].includes('0.0.0.0');
  if (config.listenPort === config.metricsPort && overlap) {
    throw new ConfigError('metrics-port', 'must differ from --listen-port');
  }
  if (config.headersTimeoutMs > config.requestTimeoutMs) throw new ConfigError('headers-timeout', 'must not be longer than --request-timeout');
  if (config.interceptHostNetwork && config.excludeUid === undefined && config.excludeGid === undefined) {
    throw new ConfigError('intercept-host-network', 'needs --exclude-uid or --exclude-gid, so the agent\'s own calls to the real IMDS are not redirected to itself');
  }
  return config;
}

export function usage(): string {
  const lines = ['usage: agent [run|uninstall|version|help] [flags]', '', '  -h, --help                 this text', '  --version                  the version, Node.js version and commit'];
  for (const [name, spec] of Object.entries(FLAGS)) {
    lines.push(`  --${name.padEnd(24)} ${spec.help} (env ${spec.env}${spec.default !== undefined ? `, default ${spec.default}` : ''})`);
  }
  return lines.join('\n');
}
