import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
import { AzureAdExchange, ExchangeError } from './exchange.js';
import { withTimeout } from './timing.js';
import { requestServiceAccountToken, tokenRequestSpec, type PodServiceAccount } from './token-request.js';
import { scopeFor, UpstreamError, type Issuer, type IssueRequest } from './types.js';

export interface FederatedIssuerOptions {
  /**
   * TokenRequests go straight to the API server with this kubeconfig's credentials and keep-alive pool
   * (preferred: less work per miss); without it, through `core`.
   */
  kubeConfig?: KubeConfig;
  core?: Pick<CoreV1Api, 'createNamespacedServiceAccountToken'>;
  /** https://login.microsoftonline.com, or the emulator. */
  authorityHost: string;
  metrics: AgentMetrics;
  timeoutMs: number;
}

/**
 * Workload identity federation: a TokenRequest for the pod's service account (audience
 * api://AzureADTokenExchange, bound to the pod so it is void once the pod is gone), exchanged with Azure AD
 * for the identity's token. Each miss asks for a new assertion bound to the calling pod: one pod's
 * assertion is never used for another.
 */
export class FederatedIssuer implements Issuer {
  private readonly aad: AzureAdExchange;

  constructor(private readonly options: FederatedIssuerOptions) {
    this.aad = new AzureAdExchange(options.authorityHost);
  }

  async issue({ identity, resource, pod }: IssueRequest): Promise<IssuedToken> {
    if (!identity.tenantId) throw new UpstreamError('aad', 500, 'no_tenant', `PodIdentity ${identity.namespace}/${identity.name} has no tenantId in its status`);
    const assertion = await this.serviceAccountToken({ namespace: pod.namespace, serviceAccount: pod.serviceAccountName, podName: pod.name, podUid: pod.uid });
    const started = performance.now();
    try {
      const token = await this.aad.exchange({ tenantId: identity.tenantId, clientId: identity.clientId, scope: scopeFor(resource), assertion }, this.options.timeoutMs);
      this.observe(started, String(token.status));
      return { accessToken: token.accessToken, expiresOn: token.expiresOn, notBefore: Math.floor(Date.now() / 1000) };
    } catch (err) {
      this.observe(started, err instanceof ExchangeError ? err.metricCode : 'error');
      throw err;
    }
  }

  /** Closes idle connections to Azure AD. */
  close(): void {
    this.aad.close();
  }

  private observe(started: number, code: string): void {
    this.options.metrics.upstreamDuration.observe({ upstream: 'aad', code }, (performance.now() - started) / 1000);
  }

  private async serviceAccountToken(pod: PodServiceAccount): Promise<string> {
    if (this.options.kubeConfig) return requestServiceAccountToken(this.options.kubeConfig, pod, this.options.timeoutMs);
    if (!this.options.core) throw new UpstreamError('kubernetes', 500, 'no_client', 'no API client for TokenRequests');
    try {
      const res = await withTimeout(
        this.options.core.createNamespacedServiceAccountToken({ name: pod.serviceAccount, namespace: pod.namespace, body: { spec: tokenRequestSpec(pod) } }),
        this.options.timeoutMs,
        () => new UpstreamError('kubernetes', 504, 'timeout', 'TokenRequest timed out'),
      );
      const token = res.status?.token;
      if (!token) throw new UpstreamError('kubernetes', 500, 'empty_token', 'TokenRequest returned no token');
      return token;
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      const code = (err as { code?: number }).code;
      // The API server's Status message says why (missing service account, pod uid mismatch…); it holds no token.
      const why = (err as Error)?.message?.split('\n')[0]?.slice(0, 300) ?? String(err);
      // 404: the pod or its service account is gone (the bound object must exist), so nothing to issue.
      throw new UpstreamError('kubernetes', code === 404 ? 404 : 500, 'token_request_failed', `TokenRequest for service account ${pod.namespace}/${pod.serviceAccount} failed${code ? ` (HTTP ${code})` : ''}: ${why}`);
    }
  }
}
