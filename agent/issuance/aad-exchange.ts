import { AsyncLocalStorage } from 'node:async_hooks';
import { ConfidentialClientApplication } from '@azure/msal-node';
import { withTimeout } from './timing.js';
import { UpstreamError } from './types.js';

export interface ExchangeRequest {
  tenantId: string;
  clientId: string;
  /** v2 scope, `<resource>/.default`. */
  scope: string;
  /** The pod's service-account token. */
  assertion: string;
}

export interface ExchangedToken {
  accessToken: string;
  /** Unix seconds. */
  expiresOn: number;
}

/** The federated client-credentials exchange with Azure AD: the one cloud call Federated mode makes. */
export interface AadExchange {
  /** Throws UpstreamError (upstream 'aad') for refusals, throttling and timeouts. */
  exchange(request: ExchangeRequest, timeoutMs: number): Promise<ExchangedToken>;
}

/** Applications kept (one per tenant and client id); the least recently used beyond this are dropped. */
const MAX_APPLICATIONS = 256;

/**
 * The exchange through msal-node: one ConfidentialClientApplication per identity keeps that identity's
 * authority metadata, so only its first exchange pays for discovery.
 */
export class MsalExchange implements AadExchange {
  private readonly apps = new Map<string, ConfidentialClientApplication>();
  /**
   * The calling pod's assertion for the exchange in progress. msal-node 7 prefers the application's
   * assertion callback over a per-request one, so the callback reads the assertion of the request it runs for.
   */
  private readonly assertion = new AsyncLocalStorage<string>();

  constructor(private readonly authorityHost: string) {}

  async exchange(req: ExchangeRequest, timeoutMs: number): Promise<ExchangedToken> {
    const app = this.app(req.clientId, req.tenantId);
    try {
      const result = await withTimeout(
        this.assertion.run(req.assertion, () => app.acquireTokenByClientCredential({ scopes: [req.scope], skipCache: true })),
        timeoutMs,
        () => new UpstreamError('aad', 504, 'timeout', `Azure AD did not answer within ${timeoutMs} ms`),
      );
      if (!result?.accessToken || !result.expiresOn) throw new UpstreamError('aad', 500, 'empty_response', 'Azure AD returned no token');
      return { accessToken: result.accessToken, expiresOn: Math.floor(result.expiresOn.getTime() / 1000) };
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      const e = err as { errorCode?: string; status?: number; errorMessage?: string; message?: string };
      const status = e.status === 429 ? 429 : 500;
      // Azure AD's own description (e.g. AADSTS70021: no matching federated credential) helps whoever debugs it.
      const description = (e.errorMessage ?? e.message ?? 'unknown error').split('\n')[0] ?? '';
      throw new UpstreamError('aad', status, e.errorCode ?? 'aad_error', `Azure AD refused the federated token exchange for client_id ${req.clientId}: ${description}`, status === 429 ? 5 : undefined);
    } finally {
      // msal-node stores every result even with skipCache, and each store scans what is already there, so a
      // kept cache makes every miss slower than the last. The agent's own cache (keyed by pod) is the cache.
      app.clearCache();
    }
  }

  private app(clientId: string, tenantId: string): ConfidentialClientApplication {
    const key = `${tenantId}/${clientId}`;
    let app = this.apps.get(key);
    if (app) {
      this.apps.delete(key);
    } else {
      app = new ConfidentialClientApplication({
        auth: {
          clientId,
          authority: `${this.authorityHost.replace(/\/+$/, '')}/${tenantId}`,
          // Only our authority: msal-node then skips instance discovery on login.microsoftonline.com.
          knownAuthorities: [new URL(this.authorityHost).host],
          clientAssertion: () => {
            const current = this.assertion.getStore();
            return current ? Promise.resolve(current) : Promise.reject(new Error('no service-account assertion for this exchange'));
          },
        },
      });
      if (this.apps.size >= MAX_APPLICATIONS) this.apps.delete(this.apps.keys().next().value!);
    }
    this.apps.set(key, app);
    return app;
  }
}
