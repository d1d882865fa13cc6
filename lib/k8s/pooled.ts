import {
  createConfiguration,
  ServerConfiguration,
  type Configuration,
  type KubeConfig,
  type RequestContext,
  type SecurityAuthentication,
} from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/**
 * client-node 2.0.1 builds a new undici Agent for every typed API call, so each call pays a TCP and TLS
 * handshake with the API server (milliseconds each, and a reconcile makes several). This keeps the
 * kubeconfig's credentials per call (token files rotate, exec plugins refresh) and reuses one connection pool.
 */
class PooledAuthentication implements SecurityAuthentication {
  private dispatcher?: Dispatcher;

  constructor(private readonly kc: KubeConfig) {}

  getName(): string {
    return 'pooled-kubeconfig';
  }

  async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await this.kc.applySecurityAuthentication(context);
    const perCall = context.getDispatcher();
    if (!perCall) return;
    this.dispatcher ??= perCall;
    // The per-call agent has never connected, so dropping it costs nothing.
    if (perCall !== this.dispatcher) context.setDispatcher(this.dispatcher);
  }
}

/** Like `kc.makeApiClient(Api)`, with one keep-alive connection pool per client instead of one per call. */
export function pooledApiClient<T>(kc: KubeConfig, apiClientType: new (config: Configuration) => T): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  return new apiClientType(
    createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}), authMethods: { default: new PooledAuthentication(kc) } }),
  );
}
