/**
 * The operator's wiring: config → logger → Azure clients → informers → reconciler → controller → leader
 * election → servers → signal handling. Behaviour lives in the modules it wires.
 */
import { type CoreV1Event, type KubeConfig, type KubernetesObject, type V1Namespace, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import { Registry } from 'prom-client';
import { registerProcessMetrics, versionText } from '../lib/build-info.js';
import { DEFAULT_SELECTOR_LABEL, GROUP, POLICY_PLURAL, PODIDENTITY_PLURAL, VERSION, type PodIdentity, type PodIdentityPolicy } from '../lib/api/types.js';
import { EventRecorder, rawEventsApi } from './k8s/events.js';
import { removeFinalizer } from './k8s/objects.js';
import { createLogger } from '../lib/log.js';
import { createArmClients } from './azure/arm/index.js';
import { operatorCredential } from './azure/arm/credential.js';
import { ConfigError, loadConfig, requestedAction, USAGE, type OperatorConfig } from './config.js';
import { registerOperatorMetrics } from './metrics.js';
import { checkNetworkPlugin } from './network-plugin.js';
import { ConfigMapOwnershipStore } from './podidentity/ownership.js';
import type { ClusterView, PodIdentityWriter, SlimNode, SlimPod } from './podidentity/ports.js';
import { recordedDemands } from './podidentity/scalesets.js';
import { EXCHANGE_EVENT_FIELD_SELECTOR, exchangeEventKey, exchangeReportOf, slimExchangeEvent } from './podidentity/exchange-events.js';
import { identityIdsOf } from './podidentity/desired.js';
import { normalizeId } from './azure/ids.js';
import { watchPodIdentityInputs } from './podidentity/watches.js';
import { PodIdentityReconciler } from './podidentity/reconciler.js';
import { ScaleSetBatcher } from './podidentity/scaleset-batcher.js';
import { BackgroundEventSink } from './runtime/event-sink.js';
import { collectionPath, Operator, refFor, type ResourceType } from './runtime/operator.js';
import { mergePatch } from './runtime/merge-patch.js';
import { startHealthMetricsServer } from '../lib/server/health-metrics.js';
import { shutdownSignal } from '../lib/process/signals.js';
import { logDeprecations } from '../lib/config/deprecations.js';
import { runUntilShutdown } from './runtime/shutdown.js';
import { startAgentTokenAdmission, type AgentTokenAdmission } from './admission/index.js';
import { kubeConfigApiServer, loadKubeConfig } from '../lib/k8s/kubeconfig.js';

const PODIDENTITIES: ResourceType = { group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL };
const POLICIES: ResourceType = { group: GROUP, version: VERSION, plural: POLICY_PLURAL };

/** Pods are cached cluster-wide: keep only what selection, service accounts and node mapping need. */
export function slimPod(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  return {
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, labels: m.labels },
    spec: { nodeName: pod.spec?.nodeName, serviceAccountName: pod.spec?.serviceAccountName, containers: [] },
    status: { phase: pod.status?.phase },
  } as V1Pod;
}

/** managedFields are most of a PodIdentity's metadata and nothing here reads them. */
function withoutManagedFields<T extends KubernetesObject>(obj: T): T {
  if (!obj.metadata?.managedFields) return obj;
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

function slimNode(node: V1Node): V1Node {
  return { metadata: { name: node.metadata?.name, resourceVersion: node.metadata?.resourceVersion }, spec: { providerID: node.spec?.providerID } };
}

function slimNamespace(ns: V1Namespace): V1Namespace {
  return { metadata: { name: ns.metadata?.name, resourceVersion: ns.metadata?.resourceVersion, labels: ns.metadata?.labels } };
}

async function main(config: OperatorConfig): Promise<void> {
  const logger = createLogger('operator', config.logLevel);
  logDeprecations(logger, config.deprecations);
  const kc = await loadKubeConfig(config.kubeconfig);

  const registry = new Registry();
  registerProcessMetrics(registry, 'operator');
  const metrics = registerOperatorMetrics(registry);
  const credential = operatorCredential({ tenantId: config.tenantId, clientId: config.clientId, clientSecret: config.clientSecret, authorityHost: config.authorityHost });
  const azure = createArmClients({ credential, subscriptionId: config.subscriptionId, endpoint: config.armEndpoint, metrics });
  // Before anything is served or reconciled: on kubenet, source-IP attribution can be spoofed (ARP).
  await checkNetworkPlugin(azure.cluster, { aksClusterId: config.aksClusterId, allowKubenet: config.allowNetworkPluginKubenet }, logger);

  const op = new Operator({
    kubeConfig: kc,
    logger,
    registry,
    ...(config.leaderElect ? { leaderElection: { namespace: config.leaderElectionNamespace, name: config.leaderElectionName, leaseDurationMs: config.leaseDurationMs, renewDeadlineMs: Math.round(config.leaseDurationMs * 2 / 3), retryPeriodMs: Math.max(500, Math.round(config.leaseDurationMs / 7)) } } : {}),
  });
  const identities = op.watchResource<PodIdentity & KubernetesObject>(PODIDENTITIES, { resyncPeriodMs: 10 * 60_000, namespace: config.watchNamespace, transform: withoutManagedFields });
  const policies = op.watchResource<PodIdentityPolicy & KubernetesObject>(POLICIES, { transform: withoutManagedFields });
  const namespaces = op.watchResource<V1Namespace>({ group: '', version: 'v1', plural: 'namespaces' }, { transform: slimNamespace });
  const pods = op.watchResource<V1Pod>({ group: '', version: 'v1', plural: 'pods' }, { transform: slimPod, namespace: config.watchNamespace });
  const nodes = op.watchResource<V1Node>({ group: '', version: 'v1', plural: 'nodes' }, { transform: slimNode });
  // The agents' FirstTokenExchange Events (FederatedCredentialPropagated): nothing else is cached.
  const exchanges = op.watchResource<CoreV1Event>({ group: '', version: 'v1', plural: 'events' }, { fieldSelector: EXCHANGE_EVENT_FIELD_SELECTOR, transform: slimExchangeEvent, namespace: config.watchNamespace });
  exchanges.addIndex('podIdentity', (e) => [exchangeEventKey(e)].filter((k) => k !== undefined));
  pods.addIndex('namespace', (p) => [p.metadata?.namespace ?? '']);
  pods.addIndex('identityLabel', (p) => {
    const value = p.metadata?.labels?.[DEFAULT_SELECTOR_LABEL];
    return value === undefined ? [] : [`${p.metadata?.namespace ?? ''}/${value}`];
  });
  pods.addIndex('node', (p) => (p.spec?.nodeName ? [p.spec.nodeName] : []));
  identities.addIndex('namespace', (p) => [p.metadata.namespace ?? '']);
  identities.addIndex('selectorNamespace', (p) => (p.spec.selector ? [p.metadata.namespace ?? ''] : []));
  identities.addIndex('identity', identityIdsOf);

  const view: ClusterView = {
    podIdentity: (key) => identities.get(key),
    podIdentities: () => identities.list(),
    policies: () => policies.list(),
    namespaceLabels: (name) => namespaces.get(name)?.metadata?.labels ?? (namespaces.get(name) ? {} : undefined),
    pods: (ns) => pods.byIndex('namespace', ns) as SlimPod[],
    podsLabelledFor: (ns, value) => pods.byIndex('identityLabel', `${ns}/${value}`) as SlimPod[],
    podIdentitiesWithSelector: (ns) => identities.byIndex('selectorNamespace', ns),
    podIdentitiesOnIdentity: (id) => identities.byIndex('identity', normalizeId(id)),
    node: (name) => nodes.get(name) as SlimNode | undefined,
    exchangeReports: (key) => exchanges.byIndex('podIdentity', key).flatMap(exchangeReportOf),
  };
  const recorder = new EventRecorder(rawEventsApi(kubeConfigApiServer(kc)), 'podidentity-operator', { logger });
  const events = new BackgroundEventSink((obj: KubernetesObject, type: 'Normal' | 'Warning', reason: string, message: string) => recorder.record(obj, type, reason, message), { logger, onDrop: () => metrics.eventsDropped.inc() });
  const pathOf = (pid: PodIdentity) => `${collectionPath(PODIDENTITIES, pid.metadata.namespace)}/${encodeURIComponent(pid.metadata.name ?? '')}`;
  const writer: PodIdentityWriter = {
    addFinalizer: async (pid, f) => {
      const current = pid.metadata.finalizers ?? [];
      if (current.includes(f)) return;
      // The resourceVersion makes it a precondition: 409 on a stale read, and the key is retried.
      const updated = await mergePatch<KubernetesObject>(kubeConfigApiServer(kc), pathOf(pid), { metadata: { finalizers: [...current, f], resourceVersion: pid.metadata.resourceVersion } });
      return updated.metadata?.resourceVersion;
    },
    removeFinalizer: async (pid, f) => void (await removeFinalizer(op.customObjects, refFor(PODIDENTITIES, pid as KubernetesObject), pid as KubernetesObject, f)),
    patchStatus: async (pid, status) => (await mergePatch<KubernetesObject>(kubeConfigApiServer(kc), `${pathOf(pid)}/status`, { status })).metadata?.resourceVersion,
    event: (pid, type, reason, message) => events.emit(pid as KubernetesObject, type, reason, message),
  };

  const ownership = new ConfigMapOwnershipStore(kc, config.operatorNamespace);
  const clock = () => new Date();
  const batcher = new ScaleSetBatcher({
    scaleSets: azure.scaleSets,
    ownership,
    windowMs: config.batchWindowMs,
    logger,
    metrics,
    recordedDemands: () => recordedDemands(view),
    canWrite: () => op.leadership() === 'leader',
    now: () => clock().getTime(),
  });
  const reconciler = new PodIdentityReconciler({
    view,
    writer,
    azure,
    batcher,
    ownership,
    logger,
    now: clock,
    settings: {
      subscriptionId: config.subscriptionId,
      defaultResourceGroup: config.resourceGroup,
      location: config.location,
      defaultMode: config.defaultMode,
      oidcIssuer: config.oidcIssuer,
      aksClusterId: config.aksClusterId,
      batchWindowMs: config.batchWindowMs,
    },
  });
  const controller = watchPodIdentityInputs(op.addController('podidentity', (key, signal, releaseWorker) => reconciler.reconcile(key, signal, releaseWorker), { workers: config.workers }), view, { identities, policies, namespaces, pods, nodes });
  controller.watch(exchanges, (e) => [exchangeEventKey(e)].filter((k) => k !== undefined));
  batcher.onSettled((keys) => keys.forEach((k) => controller.enqueue(k)));

  const countReady = () => {
    const counts: Record<string, number> = { True: 0, False: 0, Unknown: 0 };
    for (const p of identities.list()) {
      const s = p.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const [ready, n] of Object.entries(counts)) metrics.podIdentities.set({ ready }, n);
  };
  const gaugeTimer = setInterval(countReady, 10_000);
  gaugeTimer.unref();

  const signal = shutdownSignal({ logger, forceExitAfterMs: 60_000 });
  const admission: AgentTokenAdmission | undefined = config.webhook ? await startWebhook(config, kc, logger, registry) : undefined;
  const notReady = () => (op.ready() && (admission?.ready() ?? true) ? [] : ['not ready']);
  const servers = [await startHealthMetricsServer({ port: config.metricsPort, registry, notReady })];
  if (config.healthPort !== undefined && config.healthPort !== config.metricsPort) servers.push(await startHealthMetricsServer({ port: config.healthPort, registry: new Registry(), notReady }));
  logger.info('operator starting', {
    webhookPort: admission?.port,
    metricsPort: servers[0]?.port,
    healthPort: servers[1]?.port ?? servers[0]?.port,
    subscriptionId: config.subscriptionId,
    resourceGroup: config.resourceGroup,
    defaultMode: config.defaultMode,
    leaderElect: config.leaderElect,
    workers: config.workers,
    armEndpoint: config.armEndpoint,
  });
  if (admission) servers.push(admission);
  await runUntilShutdown((s) => op.start(s), signal, servers);
  batcher.stop();
  // Best effort within a bound: a shutdown never waits long on an API server that stopped answering.
  if (!(await events.drain(2000))) logger.warn('stopping with Events not yet posted', { backlog: events.backlog });
  clearInterval(gaugeTimer);
  logger.info('operator stopped');
}

/** Every leader and follower serves the webhook: the API server may call either replica through the Service. */
function startWebhook(config: OperatorConfig, kc: KubeConfig, logger: ReturnType<typeof createLogger>, registry: Registry): Promise<AgentTokenAdmission> {
  const w = config.webhook!;
  const ns = config.operatorNamespace;
  return startAgentTokenAdmission({
    kubeConfig: kc,
    logger,
    registry,
    port: w.port,
    hosts: [`${w.service}.${ns}.svc`, `${w.service}.${ns}.svc.cluster.local`, ...w.extraHosts],
    configurationName: w.configurationName,
    agent: w.agentServiceAccount,
    podName: process.env['POD_NAME'] || hostname(),
    podNamespace: ns,
  });
}

const action = requestedAction(process.argv.slice(2));
if (action === 'help') {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (action === 'version') {
  process.stdout.write(versionText('operator'));
  process.exit(0);
}
let config: OperatorConfig;
try {
  config = loadConfig(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  throw err;
}
main(config).then(
  () => process.exit(0),
  (err: unknown) => {
    createLogger('operator').error('operator failed', { err });
    process.exit(1);
  },
);
