import type { CoreV1Api } from '@kubernetes/client-node';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
import { AzureAdExchange, ExchangeError } from './exchange.js';
import { withTimeout } from './timing.js';
import { scopeFor, UpstreamError, type Issuer, type IssueRequest } from './types.js';

/** The API server's minimum; the assertion is used at once and dies with the pod anyway. */
const ASSERTION_LIFETIME_SECONDS = 600;

export interface FederatedIssuerOptions {
  core: Pick<CoreV1Api, 'createNamespacedServiceAccountToken'>;
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
    const assertion = await this.serviceAccountToken(pod.namespace, pod.serviceAccountName, pod.name, pod.uid);
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

  private async serviceAccountToken(namespace: string, serviceAccount: string, podName: string, podUid: string): Promise<string> {
    try {
      const res = await withTimeout(
        this.options.core.createNamespacedServiceAccountToken({
          name: serviceAccount,
          namespace,
          body: {
            spec: {
              audiences: [TOKEN_EXCHANGE_AUDIENCE],
              expirationSeconds: ASSERTION_LIFETIME_SECONDS,
              boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: podName, uid: podUid },
            },
          },
        }),
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
      throw new UpstreamError('kubernetes', code === 404 ? 404 : 500, 'token_request_failed', `TokenRequest for service account ${namespace}/${serviceAccount} failed${code ? ` (HTTP ${code})` : ''}: ${why}`);
    }
  }
}
