import { MODES, type Mode } from '../lib/api/types.js';
import { ConfigError } from '../lib/config/errors.js';
import { usageLines, type FlagSpecs } from '../lib/config/flags.js';
import { Settings, type Deprecation } from '../lib/config/settings.js';
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
  /** Deprecated spellings given; main logs each once. */
  deprecations: Deprecation[];
}

export { ConfigError };
export type { Deprecation };

/**
 * Every flag, its default and (by the shared convention, `POD_IDENTITY_<FLAG>`) its env variable; Azure
 * settings keep the Azure SDKs' `AZURE_*` names. `--help` prints this table.
 */
export const FLAGS: FlagSpecs = {
  'subscription-id': { env: 'AZURE_SUBSCRIPTION_ID', help: 'Azure subscription; required' },
  'resource-group': { help: 'default resource group for managed identities; required' },
  location: { help: 'default Azure region for managed identities; required' },
  'default-mode': { default: 'Federated', help: 'mode of PodIdentities that set none: Federated or Node' },
  'oidc-issuer': { help: "the cluster's service-account issuer (https); Federated mode needs it or --aks-cluster-id" },
  'aks-cluster-id': { help: 'an AKS cluster whose oidcIssuerProfile gives the issuer; also read at start-up for its network plugin (kubenet is refused)' },
  'allow-network-plugin-kubenet': { boolean: true, default: 'false', help: "run on kubenet anyway: pods with NET_RAW can take over other pods' IPs there; drop NET_RAW first" },
  workers: { default: '4', help: 'concurrent reconciles' },
  'leader-elect': { boolean: true, default: 'false', help: 'Lease-based leader election' },
  'leader-election-namespace': { deprecatedEnv: 'POD_NAMESPACE', default: 'podidentity-system', help: 'namespace of the Lease; also holds the scale-set ownership ConfigMap' },
  'leader-election-name': { default: 'podidentity-operator', help: 'Lease name' },
  'lease-duration': { bareNumberUnit: 'ms', default: '15s', help: 'Lease duration' },
  'metrics-port': { default: '8080', help: '/metrics, /healthz, /readyz port' },
  'health-port': { help: 'a separate /healthz + /readyz port (default: the metrics port)' },
  'log-level': { deprecatedEnv: 'LOG_LEVEL', default: 'info', help: 'error, warn, info or debug' },
  'arm-endpoint': { env: 'AZURE_ARM_ENDPOINT', default: 'https://management.azure.com', help: 'Azure Resource Manager endpoint (https)' },
  'authority-host': { env: 'AZURE_AUTHORITY_HOST', help: 'Azure AD authority host (https)' },
  'batch-window': { bareNumberUnit: 'ms', default: '2s', help: 'scale-set PATCH batching window' },
  kubeconfig: { env: 'KUBECONFIG', help: 'kubeconfig path (default: in-cluster)' },
  'watch-namespace': { help: 'only PodIdentities and pods in this namespace (default: all namespaces)' },
  'tenant-id': { env: 'AZURE_TENANT_ID', help: 'with --client-id and env AZURE_CLIENT_SECRET: a service principal instead of DefaultAzureCredential' },
  'client-id': { env: 'AZURE_CLIENT_ID', help: 'see --tenant-id' },
  'webhook-port': { help: 'serve the agent-token admission webhook (HTTPS) on this port (default: off)' },
  'webhook-configuration': { default: 'podidentity-agent-token-requests', help: 'its ValidatingWebhookConfiguration, whose caBundle the operator keeps' },
  'webhook-service': { default: 'podidentity-webhook', help: 'the Service in front of it, for the certificate' },
  'webhook-hosts': { help: 'more DNS names or IPs for the certificate, comma-separated (a webhook reached by URL)' },
  'agent-service-account': { help: "<namespace>:<name> of the agent's ServiceAccount, the only identity the webhook constrains (default <operator namespace>:podidentity-agent)" },
};

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

export const USAGE = ['pod-identity operator', '', '  -h, --help                     this text', '  --version                      the version, Node.js version and commit', ...usageLines(FLAGS), ''].join('\n');

/** `--help`/`-h` and `--version` anywhere on the command line win over every other flag, valid or not. */
export function requestedAction(argv: string[]): 'help' | 'version' | undefined {
  if (argv.some((a) => a === '--help' || a === '-h')) return 'help';
  if (argv.includes('--version')) return 'version';
  return undefined;
}

/** Parses and validates flags (then env). Throws ConfigError naming the flag. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const s = Settings.fromArgv(FLAGS, argv, env);
  const subscriptionId = s.required('subscription-id');
  if (!GUID.test(subscriptionId)) s.fail('subscription-id', `"${subscriptionId}" is not a GUID`);
  const resourceGroup = s.required('resource-group');
  if (!/^[-\w._()]{1,90}$/.test(resourceGroup) || resourceGroup.endsWith('.')) s.fail('resource-group', `"${resourceGroup}" is not a valid resource group name`);
  const location = s.required('location');
  if (!/^[a-z0-9]{2,40}$/.test(location)) s.fail('location', `"${location}" is not an Azure region name (e.g. westeurope)`);
  const mode = s.oneOf('default-mode', MODES);
  const oidcIssuer = s.raw('oidc-issuer') === undefined ? undefined : s.url('oidc-issuer', ['https:']);
  const aksClusterId = s.raw('aks-cluster-id');
  if (aksClusterId) {
    const p = parseTyped(aksClusterId, 'Microsoft.ContainerService', 'managedClusters', 'a managedClusters resource id');
    if (!p.ok) s.fail('aks-cluster-id', `"${aksClusterId}" ${p.problem}`);
  }
  // Both may be set: the issuer flag then wins, and the cluster is still read for its network plugin.
  if (!oidcIssuer && !aksClusterId && mode === 'Federated') s.fail('oidc-issuer', 'Federated mode needs --oidc-issuer or --aks-cluster-id');
  const tenantId = s.raw('tenant-id');
  if (tenantId && !GUID.test(tenantId)) s.fail('tenant-id', `"${tenantId}" is not a GUID`);
  const leaderElectionNamespace = s.required('leader-election-namespace');
  const healthPort = s.optionalInt('health-port', 0, 65535);
  let webhook: OperatorConfig['webhook'];
  if (s.raw('webhook-port') !== undefined) {
    const agent = s.raw('agent-service-account') ?? `${leaderElectionNamespace}:podidentity-agent`;
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(agent);
    if (!m) return s.fail('agent-service-account', `"${agent}" must be <namespace>:<service account name>`);
    webhook = {
      port: s.int('webhook-port', 1, 65535),
      configurationName: s.required('webhook-configuration'),
      service: s.required('webhook-service'),
      extraHosts: (s.raw('webhook-hosts') ?? '').split(',').map((h) => h.trim()).filter(Boolean),
      agentServiceAccount: { namespace: m[1]!, serviceAccount: m[3]! },
    };
  }
  const authorityHost = s.raw('authority-host') === undefined ? undefined : s.url('authority-host', ['https:']);
  const kubeconfig = s.raw('kubeconfig');
  const watchNamespace = s.raw('watch-namespace');
  const clientId = s.raw('client-id');
  return {
    subscriptionId,
    resourceGroup,
    location,
    defaultMode: mode,
    oidcIssuer,
    aksClusterId,
    allowNetworkPluginKubenet: s.bool('allow-network-plugin-kubenet'),
    workers: s.int('workers', 1, 64),
    leaderElect: s.bool('leader-elect'),
    leaderElectionNamespace,
    leaderElectionName: s.required('leader-election-name'),
    leaseDurationMs: s.duration('lease-duration', 2000, Number.MAX_SAFE_INTEGER),
    metricsPort: s.int('metrics-port', 0, 65535),
    ...(healthPort !== undefined ? { healthPort } : {}),
    logLevel: s.oneOf('log-level', LOG_LEVELS),
    armEndpoint: s.url('arm-endpoint', ['https:']),
    ...(authorityHost ? { authorityHost } : {}),
    batchWindowMs: s.duration('batch-window', 0, 60_000),
    operatorNamespace: leaderElectionNamespace,
    ...(kubeconfig ? { kubeconfig } : {}),
    ...(watchNamespace ? { watchNamespace } : {}),
    ...(tenantId ? { tenantId } : {}),
    ...(clientId ? { clientId } : {}),
    ...(env['AZURE_CLIENT_SECRET'] ? { clientSecret: env['AZURE_CLIENT_SECRET'] } : {}),
    ...(webhook ? { webhook } : {}),
    deprecations: s.deprecations,
  };
}
