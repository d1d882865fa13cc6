import type { Server } from 'node:http';
import { connectApiServer } from '../lib/k8s/kubeconfig.js';
import type { Logger } from '../lib/log.js';
import { startHealthMetricsServer } from '../lib/server/health-metrics.js';
import { Attributor } from './attribution/attributor.js';
import { AuditLog } from './audit.js';
import { KubeExceptionDirectory } from './attribution/exceptions-kube.js';
import { KubeIdentityDirectory, KubePodDirectory } from './attribution/kube.js';
import { TokenCache } from './cache/token-cache.js';
import { IssuanceLimits } from './issuance/limits.js';
import { createImdsServer } from './imds-server.js';
import type { AgentConfig } from './config.js';
import { createImdsHandler } from './handler.js';
import { selectIptables } from './interception/iptables.js';
import { Interceptor } from './interception/interceptor.js';
import { FederatedIssuer } from './issuance/federated.js';
import { eventCreator, FirstExchangeReporter } from './issuance/first-exchange.js';
import { NodeIssuer } from './issuance/node.js';
import { AgentMetrics } from './metrics.js';
import { MemoryReducer, memoryReducingCollection } from './memory-reducer.js';

export interface RunningAgent {
  metrics: AgentMetrics;
  /** Stops serving and watching. The interception rules stay in place (fail closed). */
  stop(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * Wiring only. Order matters for failing closed: the rules go in first (pods are refused, not sent to the
 * real IMDS), then the caches start, then the listener; readiness waits for every cache.
 */
export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  const metrics = new AgentMetrics({ defaultMetrics: true });
  let interceptor: Interceptor | undefined;
  if (config.manageIptables) {
    const backend = await selectIptables(config.iptablesMode, config.iptablesBinary);
    interceptor = new Interceptor(
      backend,
      { agentIp: config.nodeIp, agentPort: config.listenPort, interceptHostNetwork: config.interceptHostNetwork, excludeUid: config.excludeUid, excludeGid: config.excludeGid },
      metrics,
      logger,
    );
    await interceptor.install();
    interceptor.startDriftChecks(config.driftCheckIntervalMs);
  }

  // In a pod this loads nothing from client-node (lib/k8s/kubeconfig.ts): most of the agent's memory floor.
  const { api, source } = await connectApiServer(config.kubeconfig);
  logger.info('kubernetes API', { server: api.server, config: source.kind });
  const pods = new KubePodDirectory(api, config.nodeName, config.readThroughTimeoutMs, logger);
  const identities = new KubeIdentityDirectory(api, logger);
  const watching = new AbortController();
  // Opt-in: without --exceptions-configmap no pod is ever passed through to the node IMDS.
  const exceptions = config.exceptionsConfigMap ? new KubeExceptionDirectory(api, config.exceptionsConfigMap, metrics, logger) : undefined;
  pods.informer.start(watching.signal);
  identities.informer.start(watching.signal);
  exceptions?.informer.start(watching.signal);

  const cache = new TokenCache({
    maxEntries: config.cacheMaxEntries,
    safetyMarginSeconds: config.cacheSafetyMarginSeconds,
    refreshAheadSeconds: config.cacheRefreshAheadSeconds,
    // A principal cannot hold more tokens than it may ask for distinct resources, so it evicts only its own.
    maxEntriesPerPrincipal: Math.min(config.cacheMaxEntries, config.maxResourcesPerIdentity),
    bypassMinIntervalMs: config.bypassMinIntervalMs,
    onRefresh: (outcome) => metrics.cacheRefreshes.inc({ outcome }),
    onEvict: () => metrics.cacheEvictions.inc(),
    onSize: (n) => metrics.cacheEntries.set(n),
    onBypass: (honoured) => metrics.bypassRequests.inc({ honoured: String(honoured) }),
    onRefreshError: (_key, err) => logger.warn('background token refresh failed', { err }),
  });
  const audit = new AuditLog(logger);
  const attributor = new Attributor(config.nodeName, pods, identities, {
    catchUpMs: config.verifyWaitMs,
    readTimeoutMs: config.readThroughTimeoutMs,
    readBudget: { perSource: config.verifyReadsPerSource, total: config.verifyReadsTotal, windowMs: config.verifyReadWindowMs },
    onRead: (result) => metrics.verifyReads.inc({ result }),
    onRefused: (reason) => metrics.rejections.inc({ reason }),
  });
  const issuanceLimits = new IssuanceLimits({
    maxResources: config.maxResourcesPerIdentity,
    maxExchanges: config.maxExchangesPerIdentity,
    windowMs: config.issuanceWindowMs,
    onRefused: (reason) => metrics.rejections.inc({ reason }),
  });
  const firstExchanges = new FirstExchangeReporter(eventCreator(api, config.upstreamTimeoutMs), config.nodeName, logger);
  const handler = createImdsHandler({
    nodeName: config.nodeName,
    defaultMode: config.defaultMode,
    notReadyWaitMs: config.notReadyWaitMs,
    metadataProxy: config.metadataProxy,
    upstreamImds: config.upstreamImds,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    attributor,
    pods,
    identities,
    issuers: {
      Federated: new FederatedIssuer({ apiServer: api, authorityHost: config.authorityHost, metrics, timeoutMs: config.upstreamTimeoutMs, onExchanged: (identity, subject) => firstExchanges.exchanged(identity, subject) }),
      Node: new NodeIssuer({ upstreamImds: config.upstreamImds, metrics, timeoutMs: config.upstreamTimeoutMs }),
    },
    cache,
    metrics,
    logger,
    audit,
    exceptions,
    issuanceLimits,
  });

  // With the image's --expose-gc: give V8's pooled pages back once a burst is over (memory-reducer.ts).
  const collect = memoryReducingCollection();
  const reducer = collect
    ? new MemoryReducer({
        collect,
        rss: () => process.memoryUsage.rss(),
        now: () => performance.now(),
        checkIntervalMs: 5_000,
        quietLooks: 6,
        minGrowthBytes: 8 * 2 ** 20,
        minIntervalMs: 15_000,
        onReduced: ({ rssBefore, rssAfter, pauseMs }) => logger.debug('memory given back', { rssBeforeMB: Math.round(rssBefore / 2 ** 20), rssAfterMB: Math.round(rssAfter / 2 ** 20), pauseMs: Math.round(pauseMs) }),
      })
    : undefined;
  const imds = createImdsServer(
    reducer
      ? (req, res) => {
          reducer.activity();
          handler(req, res);
        }
      : handler,
    {
      maxConnections: config.maxConnections,
      maxConnectionsPerSource: config.maxConnectionsPerSource,
      maxStrangerConnections: config.maxStrangerConnections,
      headersTimeoutMs: config.headersTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    },
    {
      onConnection: (socket) => {
        reducer?.activity();
        attributor.connectionOpened(socket);
      },
      onRejected: (reason) => metrics.rejections.inc({ reason }),
      onOpenConnections: (n) => metrics.openConnections.set(n),
      isNodePodAddress: (ip) => pods.byIp(ip).length > 0,
    },
  );
  const health = await startHealthMetricsServer({
    port: config.metricsPort,
    host: config.metricsAddress,
    registry: metrics.registry,
    notReady: () => [
      ...(interceptor && !interceptor.rulesInPlace() ? ['interception rules not in place'] : []),
      ...(pods.hasSynced() ? [] : ['pod cache not synced']),
      ...(identities.hasSynced() ? [] : ['PodIdentity cache not synced']),
      ...(exceptions && !exceptions.hasSynced() ? ['IMDS exceptions cache not synced'] : []),
    ],
  });
  // Until both caches are synced every answer would be a guess; refused connections (the rules are already
  // in place) make SDKs retry instead.
  await Promise.all([pods.informer.waitForSync(watching.signal), identities.informer.waitForSync(watching.signal), exceptions?.informer.waitForSync(watching.signal)]);
  await listen(imds, config.listenPort, config.listenAddress);
  reducer?.start();
  logger.info('agent serving', { node: config.nodeName, listen: `${config.listenAddress}:${config.listenPort}`, metrics: `${config.metricsAddress}:${config.metricsPort}`, defaultMode: config.defaultMode, exceptionsConfigMap: config.exceptionsConfigMap ? `${config.exceptionsConfigMap.namespace}/${config.exceptionsConfigMap.name}` : undefined });

  return {
    metrics,
    async stop() {
      interceptor?.stop();
      reducer?.stop();
      watching.abort();
      audit.stop();
      await Promise.all([close(imds), health.close(), pods.informer.stop(), identities.informer.stop(), exceptions?.informer.stop()]);
    },
  };
}
