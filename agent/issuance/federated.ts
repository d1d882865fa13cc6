import type { ApiServer } from '../../lib/k8s/api-server.js';
import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
import { MsalExchange, type AadExchange } from './aad-exchange.js';
import { requestServiceAccountToken, type PodServiceAccount } from './token-request.js';
import { scopeFor, UpstreamError, type Issuer, type IssueRequest } from './types.js';

export interface FederatedIssuerOptions {
  /** TokenRequests go straight to the API server, with its credentials and keep-alive pool. */
  apiServer: ApiServer;
  /** https://login.microsoftonline.com, or the emulator. */
  authorityHost: string;
  /** The Azure AD exchange; msal-node against `authorityHost` unless given (unit tests). */
  aad?: AadExchange;
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
  private readonly aad: AadExchange;

  constructor(private readonly options: FederatedIssuerOptions) {
    this.aad = options.aad ?? new MsalExchange(options.authorityHost);
  }

  async issue({ identity, resource, pod }: IssueRequest): Promise<IssuedToken> {
    if (!identity.tenantId) throw new UpstreamError('aad', 500, 'no_tenant', `PodIdentity ${identity.namespace}/${identity.name} has no tenantId in its status`);
    const assertion = await this.serviceAccountToken({ namespace: pod.namespace, serviceAccount: pod.serviceAccountName, podName: pod.name, podUid: pod.uid });
    const started = performance.now();
    try {
      const token = await this.aad.exchange({ tenantId: identity.tenantId, clientId: identity.clientId, scope: scopeFor(resource), assertion }, this.options.timeoutMs);
      this.observe(started, '200');
      return { accessToken: token.accessToken, expiresOn: token.expiresOn, notBefore: Math.floor(Date.now() / 1000) };
    } catch (err) {
      this.observe(started, err instanceof UpstreamError ? (err.code === 'timeout' ? 'timeout' : String(err.status)) : 'error');
      throw err;
    }
  }

  private observe(started: number, code: string): void {
    this.options.metrics.upstreamDuration.observe({ upstream: 'aad', code }, (performance.now() - started) / 1000);
  }

  private serviceAccountToken(pod: PodServiceAccount): Promise<string> {
    return requestServiceAccountToken(this.options.apiServer, pod, this.options.timeoutMs);
  }
}
