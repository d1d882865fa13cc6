import type { ApiServer } from '../../lib/k8s/api-server.js';
import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
import type { ReadyIdentity } from './select.js';
import { MsalExchange, type AadExchange } from './aad-exchange.js';
import { AadExchangeError, classifyAadFailure, DEFAULT_PROPAGATION_WINDOW_MS } from './aad-failure.js';
import { requestServiceAccountToken, type PodServiceAccount } from './token-request.js';
import { scopeFor, timed, UpstreamError, type Issuer, type IssueRequest } from './types.js';

export interface FederatedIssuerOptions {
  /** TokenRequests go straight to the API server, with its credentials and keep-alive pool. */
  apiServer: ApiServer;
  /** https://login.microsoftonline.com, or the emulator. */
  authorityHost: string;
  /** The Azure AD exchange; msal-node against `authorityHost` unless given (unit tests). */
  aad?: AadExchange;
  metrics: AgentMetrics;
  timeoutMs: number;
  /** How long after the operator wrote a credential Azure AD's "no such credential" means "not yet"; default 10 min. */
  propagationWindowMs?: number;
  /** Told of each successful exchange (the first-exchange Event); never blocks or fails issuance. */
  onExchanged?: (identity: ReadyIdentity, subject: string) => void;
  now?: () => number;
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

  async issue({ identity, resource, pod, upstream }: IssueRequest): Promise<IssuedToken> {
    // The operator writes the tenant with the client id; without it the PodIdentity is not finished yet.
    if (!identity.tenantId) throw new UpstreamError('aad', 503, 'no_tenant', `PodIdentity ${identity.namespace}/${identity.name} has no tenantId in its status yet`, 5);
    const subject = `system:serviceaccount:${pod.namespace}:${pod.serviceAccountName}`;
    const assertion = await timed(upstream, () => this.serviceAccountToken({ namespace: pod.namespace, serviceAccount: pod.serviceAccountName, podName: pod.name, podUid: pod.uid }));
    const started = performance.now();
    try {
      const token = await timed(upstream, () => this.aad.exchange({ tenantId: identity.tenantId, clientId: identity.clientId, scope: scopeFor(resource), assertion }, this.options.timeoutMs));
      this.observe(started, '200');
      this.options.onExchanged?.(identity, subject);
      return { accessToken: token.accessToken, expiresOn: token.expiresOn, notBefore: Math.floor(Date.now() / 1000) };
    } catch (err) {
      // The code label is what Azure AD (or the way to it) did, not what the pod is answered.
      this.observe(started, err instanceof AadExchangeError ? (err.failure.kind === 'refused' ? String(err.failure.status) : 'unreachable') : err instanceof UpstreamError ? String(err.status) : 'error');
      if (!(err instanceof AadExchangeError)) throw err;
      const now = (this.options.now ?? Date.now)();
      throw classifyAadFailure(err.failure, {
        clientId: identity.clientId,
        subject,
        credentialWrittenAt: identity.credentialWrites?.get(subject),
        now,
        propagationWindowMs: this.options.propagationWindowMs ?? DEFAULT_PROPAGATION_WINDOW_MS,
      });
    }
  }

  private observe(started: number, code: string): void {
    this.options.metrics.upstreamDuration.observe({ upstream: 'aad', code }, (performance.now() - started) / 1000);
  }

  private serviceAccountToken(pod: PodServiceAccount): Promise<string> {
    return requestServiceAccountToken(this.options.apiServer, pod, this.options.timeoutMs);
  }
}
