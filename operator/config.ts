import { parseArgs } from 'node:util';
import { MODES, type Mode } from '../lib/api/types.js';
import { parseTyped } from './azure/arm-id.js';

export interface OperatorConfig {
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  defaultMode: Mode;
  oidcIssuer?: string;
  aksClusterId?: string;
  /** Run even though the AKS cluster uses kubenet (pods with NET_RAW can spoof each other's IPs). */
  allowNetworkPluginKubenet: boolean;
  workers: number;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionName: string;
  leaseDurationMs: number;
  metricsPort: number;
  /** Same server as metrics unless set to another port. */
  healthPort?: number;
  logLevel: string;
  armEndpoint: string;
  authorityHost?: string;
  batchWindowMs: number;
  /** Where the durable scale-set ownership ConfigMap lives. */
  operatorNamespace: string;
  kubeconfig?: string;
  /** Only this namespace's PodIdentities and Pods (sharding, tests); default all namespaces. */
  watchNamespace?: string;
  /** A service principal (tests, the emulator); otherwise DefaultAzureCredential. The secret only ever comes from env. */
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** The agent-token admission webhook (operator/admission); off unless a port is set. */
  webhook?: { port: number; configurationName: string; service: string; extraHosts: string[]; agentServiceAccount: { namespace: string; serviceAccount: string } };
}

export class ConfigError extends Error {
  constructor(readonly flag: string, message: string) {
    super(`--${flag}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Flag → environment variable fallback. */
const ENV: Record<string, string> = {
  'subscription-id': 'AZURE_SUBSCRIPTION_ID',
  'resource-group': 'POD_IDENTITY_RESOURCE_GROUP',
  location: 'POD_IDENTITY_LOCATION',
  'default-mode': 'POD_IDENTITY_DEFAULT_MODE',
  'oidc-issuer': 'POD_IDENTITY_OIDC_ISSUER',
  'aks-cluster-id': 'POD_IDENTITY_AKS_CLUSTER_ID',
  'allow-network-plugin-kubenet': 'POD_IDENTITY_ALLOW_NETWORK_PLUGIN_KUBENET',
  workers: 'POD_IDENTITY_WORKERS',
  'leader-elect': 'POD_IDENTITY_LEADER_ELECT',
  'leader-election-namespace': 'POD_NAMESPACE',
  'leader-election-name': 'POD_IDENTITY_LEADER_ELECTION_NAME',
  'lease-duration': 'POD_IDENTITY_LEASE_DURATION',
  'metrics-port': 'POD_IDENTITY_METRICS_PORT',
  'health-port': 'POD_IDENTITY_HEALTH_PORT',
  'log-level': 'LOG_LEVEL',
  'arm-endpoint': 'AZURE_ARM_ENDPOINT',
  'authority-host': 'AZURE_AUTHORITY_HOST',
  'batch-window': 'POD_IDENTITY_BATCH_WINDOW',
  kubeconfig: 'KUBECONFIG',
  'watch-namespace': 'POD_IDENTITY_WATCH_NAMESPACE',
  'tenant-id': 'AZURE_TENANT_ID',
  'client-id': 'AZURE_CLIENT_ID',
  'webhook-port': 'POD_IDENTITY_WEBHOOK_PORT',
  'webhook-configuration': 'POD_IDENTITY_WEBHOOK_CONFIGURATION',
  'webhook-service': 'POD_IDENTITY_WEBHOOK_SERVICE',
  'webhook-hosts': 'POD_IDENTITY_WEBHOOK_HOSTS',
  'agent-service-account': 'POD_IDENTITY_AGENT_SERVICE_ACCOUNT',
};

/** Flags that may stand alone (meaning true) or take =true/=false. */
const BOOL_FLAGS = ['leader-elect', 'allow-network-plugin-kubenet'];
const STRING_FLAGS = Object.keys(ENV).filter((f) => !BOOL_FLAGS.includes(f));
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

/** "2s", "500ms", "1m", or a number of milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new ConfigError(flag, `"${value}" is not a duration (e.g. 500ms, 2s, 1m)`);
  const n = Number(m[1]);
  return Math.round(m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60_000 : n);
}

function parseIntFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new ConfigError(flag, `"${value}" must be an integer from ${min} to ${max}`);
  return n;
}

function parseBool(flag: string, value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new ConfigError(flag, `"${value}" must be true or false`);
}

function httpsUrl(flag: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(flag, `"${value}" is not a URL`);
  }
  if (url.protocol !== 'https:') throw new ConfigError(flag, `"${value}" must be an https URL`);
  return value.replace(/\/+$/, '');
}

export const USAGE = `pod-identity operator

  --subscription-id ID            Azure subscription (env AZURE_SUBSCRIPTION_ID)            required
  --resource-group NAME           default resource group for managed identities             required
  --location REGION               default Azure region for managed identities                required
  --default-mode Federated|Node   mode of PodIdentities that set none (default Federated)
  --oidc-issuer URL               the cluster's service-account issuer, or
  --aks-cluster-id ID             an AKS cluster whose oidcIssuerProfile gives it            one required for Federated
                                  (also read at startup: its network plugin; kubenet is refused)
  --allow-network-plugin-kubenet[=true|false]  run on kubenet anyway (default false): pods with NET_RAW
                                  can take over other pods' IPs there; drop NET_RAW first
  --workers N                     concurrent reconciles (default 4)
  --leader-elect[=true|false]     Lease-based leader election (default false)
  --leader-election-namespace NS  (env POD_NAMESPACE; default podidentity-system)
  --leader-election-name NAME     Lease name (default podidentity-operator)
  --lease-duration DURATION       (default 15s)
  --metrics-port PORT             /metrics, /healthz, /readyz (default 8080)
  --health-port PORT              a separate /healthz + /readyz port (default: the metrics port)
  --log-level error|warn|info|debug (default info)
  --arm-endpoint URL              (default https://management.azure.com)
  --authority-host URL            Azure AD authority (env AZURE_AUTHORITY_HOST)
  --batch-window DURATION         scale-set PATCH batching window (default 2s)
  --kubeconfig PATH               (default: in-cluster, or KUBECONFIG)
  --watch-namespace NS            only PodIdentities and pods in NS (default: all namespaces)
  --tenant-id, --client-id        with env AZURE_CLIENT_SECRET: a service principal instead of DefaultAzureCredential
  --webhook-port PORT             serve the agent-token admission webhook (HTTPS) on PORT (default: off)
  --webhook-configuration NAME    its ValidatingWebhookConfiguration, whose caBundle the operator keeps
                                  (default podidentity-agent-token-requests)
  --webhook-service NAME          the Service in front of it, for the certificate (default podidentity-webhook)
  --webhook-hosts H1,H2           more DNS names or IPs for the certificate (a webhook reached by URL)
  --agent-service-account NS:NAME the agent's ServiceAccount, the only identity the webhook constrains
                                  (default <operator namespace>:podidentity-agent)
  -h, --help                      this text
  --version                       the version, Node.js version and commit
`;

/** `--help`/`-h` and `--version` anywhere on the command line win over every other flag, valid or not. */
export function requestedAction(argv: string[]): 'help' | 'version' | undefined {
  if (argv.some((a) => a === '--help' || a === '-h')) return 'help';
  if (argv.includes('--version')) return 'version';
  return undefined;
}

/** Parses and validates flags (then env). Throws ConfigError naming the flag. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const f of STRING_FLAGS) options[f] = { type: 'string' };
  for (const f of BOOL_FLAGS) options[f] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    // A boolean flag alone means true: rewrite it before parsing so it can also take a value.
    const args = argv.map((a) => (BOOL_FLAGS.some((f) => a === `--${f}`) ? `${a}=true` : a));
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    const flag = /'(--[\w-]+)/.exec(String((err as Error).message))?.[1]?.slice(2) ?? 'args';
    throw new ConfigError(flag, (err as Error).message);
  }
  const get = (flag: string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string' && v !== '') return v;
    const e = ENV[flag] ? env[ENV[flag]] : undefined;
    return e !== undefined && e !== '' ? e : undefined;
  };
  const required = (flag: string): string => {
    const v = get(flag);
    if (!v) throw new ConfigError(flag, `is required${ENV[flag] ? ` (or env ${ENV[flag]})` : ''}`);
    return v;
  };

  const subscriptionId = required('subscription-id');
  if (!GUID.test(subscriptionId)) throw new ConfigError('subscription-id', `"${subscriptionId}" is not a GUID`);
  const resourceGroup = required('resource-group');
  if (!/^[-\w._()]{1,90}$/.test(resourceGroup) || resourceGroup.endsWith('.')) throw new ConfigError('resource-group', `"${resourceGroup}" is not a valid resource group name`);
  const location = required('location');
  if (!/^[a-z0-9]{2,40}$/.test(location)) throw new ConfigError('location', `"${location}" is not an Azure region name (e.g. westeurope)`);
  const mode = get('default-mode') ?? 'Federated';
  if (!(MODES as readonly string[]).includes(mode)) throw new ConfigError('default-mode', `"${mode}" must be one of ${MODES.join(', ')}`);
  const oidcIssuer = get('oidc-issuer') ? httpsUrl('oidc-issuer', get('oidc-issuer')!) : undefined;
  const aksClusterId = get('aks-cluster-id');
  if (aksClusterId) {
    const p = parseTyped(aksClusterId, 'Microsoft.ContainerService', 'managedClusters', 'a managedClusters resource id');
    if (!p.ok) throw new ConfigError('aks-cluster-id', `"${aksClusterId}" ${p.problem}`);
  }
  // Both may be set: the issuer flag then wins, and the cluster is still read for its network plugin.
  if (!oidcIssuer && !aksClusterId && mode === 'Federated') throw new ConfigError('oidc-issuer', 'Federated mode needs --oidc-issuer or --aks-cluster-id');
  const logLevel = get('log-level') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('log-level', `"${logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
  const batchWindowMs = parseDuration('batch-window', get('batch-window') ?? '2s');
  if (batchWindowMs < 0 || batchWindowMs > 60_000) throw new ConfigError('batch-window', 'must be between 0 and 1m');
  const leaseDurationMs = parseDuration('lease-duration', get('lease-duration') ?? '15s');
  if (leaseDurationMs < 2000) throw new ConfigError('lease-duration', 'must be at least 2s');
  const tenantId = get('tenant-id');
  if (tenantId && !GUID.test(tenantId)) throw new ConfigError('tenant-id', `"${tenantId}" is not a GUID`);
  const leaderElectionNamespace = get('leader-election-namespace') ?? 'podidentity-system';
  const healthPort = get('health-port');
  const webhookPort = get('webhook-port');
  let webhook: OperatorConfig['webhook'];
  if (webhookPort !== undefined) {
    const agent = get('agent-service-account') ?? `${leaderElectionNamespace}:podidentity-agent`;
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(agent);
    if (!m) throw new ConfigError('agent-service-account', `"${agent}" must be <namespace>:<service account name>`);
    webhook = {
      port: parseIntFlag('webhook-port', webhookPort, 1, 65535),
      configurationName: get('webhook-configuration') ?? 'podidentity-agent-token-requests',
      service: get('webhook-service') ?? 'podidentity-webhook',
      extraHosts: (get('webhook-hosts') ?? '').split(',').map((h) => h.trim()).filter(Boolean),
      agentServiceAccount: { namespace: m[1]!, serviceAccount: m[3]! },
    };
  }
  return {
    subscriptionId,
    resourceGroup,
    location,
    defaultMode: mode as Mode,
    oidcIssuer,
    aksClusterId,
    allowNetworkPluginKubenet: parseBool('allow-network-plugin-kubenet', get('allow-network-plugin-kubenet') ?? 'false'),
    workers: parseIntFlag('workers', get('workers') ?? '4', 1, 64),
    leaderElect: parseBool('leader-elect', get('leader-elect') ?? 'false'),
    leaderElectionNamespace,
    leaderElectionName: get('leader-election-name') ?? 'podidentity-operator',
    leaseDurationMs,
    metricsPort: parseIntFlag('metrics-port', get('metrics-port') ?? '8080', 0, 65535),
    ...(healthPort ? { healthPort: parseIntFlag('health-port', healthPort, 0, 65535) } : {}),
    logLevel,
    armEndpoint: httpsUrl('arm-endpoint', get('arm-endpoint') ?? 'https://management.azure.com'),
    ...(get('authority-host') ? { authorityHost: httpsUrl('authority-host', get('authority-host')!) } : {}),
    batchWindowMs,
    operatorNamespace: leaderElectionNamespace,
    ...(get('kubeconfig') ? { kubeconfig: get('kubeconfig') } : {}),
    ...(get('watch-namespace') ? { watchNamespace: get('watch-namespace') } : {}),
    ...(tenantId ? { tenantId } : {}),
    ...(get('client-id') ? { clientId: get('client-id') } : {}),
    ...(env['AZURE_CLIENT_SECRET'] ? { clientSecret: env['AZURE_CLIENT_SECRET'] } : {}),
    ...(webhook ? { webhook } : {}),
  };
}
