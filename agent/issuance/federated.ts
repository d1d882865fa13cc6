import { AsyncLocalStorage } from 'node:async_hooks';
import { ConfidentialClientApplication } from '@azure/msal-node';
import type { CoreV1Api } from '@kubernetes/client-node';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
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
 * through msal-node for the identity's token.
 */
export class FederatedIssuer implements Issuer {
  private readonly apps = new Map<string, ConfidentialClientApplication>();
  /**
   * The calling pod's assertion for the exchange in progress. msal-node 7 prefers the application's
   * assertion callback over a per-request one, and one application per identity keeps its authority
   * metadata cached, so the callback reads the assertion of the request it runs for.
   */
  private readonly assertion = new AsyncLocalStorage<string>();

  constructor(private readonly options: FederatedIssuerOptions) {}

  async issue({ identity, resource, pod }: IssueRequest): Promise<IssuedToken> {
    if (!identity.tenantId) throw new UpstreamError('aad', 500, 'no_tenant', `PodIdentity ${identity.namespace}/${identity.name} has no tenantId in its status`);
    const assertion = await this.serviceAccountToken(pod.namespace, pod.serviceAccountName, pod.name, pod.uid);
    const app = this.app(identity.clientId, identity.tenantId);
    const started = performance.now();
    try {
      const result = await withTimeout(
        this.assertion.run(assertion, () => app.acquireTokenByClientCredential({ scopes: [scopeFor(resource)], skipCache: true })),
        this.options.timeoutMs,
        () => new UpstreamError('aad', 504, 'timeout', `Azure AD did not answer within ${this.options.timeoutMs} ms`),
      );
      this.observe(started, '200');
      if (!result?.accessToken || !result.expiresOn) throw new UpstreamError('aad', 500, 'empty_response', 'Azure AD returned no token');
      return { accessToken: result.accessToken, expiresOn: Math.floor(result.expiresOn.getTime() / 1000), notBefore: Math.floor(Date.now() / 1000) };
    } catch (err) {
      if (err instanceof UpstreamError) {
        this.observe(started, err.code === 'timeout' ? 'timeout' : String(err.status));
        throw err;
      }
      const e = err as { errorCode?: string; status?: number; errorMessage?: string; message?: string };
      this.observe(started, e.status ? String(e.status) : 'error');
      const status = e.status === 429 ? 429 : 500;
      // Azure AD's own description (e.g. AADSTS70021: no matching federated credential) helps whoever debugs it.
      const description = (e.errorMessage ?? e.message ?? 'unknown error').split('\n')[0] ?? '';
      throw new UpstreamError('aad', status, e.errorCode ?? 'aad_error', `Azure AD refused the federated token exchange for client_id ${identity.clientId}: ${description}`, status === 429 ? 5 : undefined);
    }
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

  private app(clientId: string, tenantId: string): ConfidentialClientApplication {
    const key = `${tenantId}/${clientId}`;
    let app = this.apps.get(key);
    if (!app) {
      const host = new URL(this.options.authorityHost).host;
      app = new ConfidentialClientApplication({
        auth: {
          clientId,
          authority: `${this.options.authorityHost}/${tenantId}`,
          // Only our authority: msal-node then skips instance discovery on login.microsoftonline.com.
          knownAuthorities: [host],
          clientAssertion: () => {
            const current = this.assertion.getStore();
            return current ? Promise.resolve(current) : Promise.reject(new Error('no service-account assertion for this exchange'));
          },
        },
      });
      if (this.apps.size >= 1000) this.apps.clear();
      this.apps.set(key, app);
    }
    return app;
  }
}
