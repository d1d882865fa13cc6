import { AsyncLocalStorage } from 'node:async_hooks';
import type * as Msal from '@azure/msal-node';
import type { ConfidentialClientApplication, INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node';
import { createRequire } from 'node:module';
import { AadExchangeError } from './aad-failure.js';
import { DiscoveryDocuments } from './discovery-documents.js';
import { headerValue, requestText } from './http-client.js';
import { withTimeout } from './timing.js';
import { MAX_UPSTREAM_CODE_CHARS, MAX_UPSTREAM_MESSAGE_CHARS, truncated } from './types.js';

/**
 * msal-node's CommonJS build, not its ES one: the ES build loads msal-common as about 50 modules, the CommonJS
 * build is one file, and a process that imports it keeps 2.6 MB less heap (agent/README.md, "Memory").
 */
const msal = createRequire(import.meta.url)('@azure/msal-node') as typeof Msal;

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
  /** Throws AadExchangeError for refusals, throttling, timeouts and an unreachable Azure AD. */
  exchange(request: ExchangeRequest, timeoutMs: number): Promise<ExchangedToken>;
}

/** Applications kept (one per tenant and client id); the least recently used beyond this are dropped. */
const MAX_APPLICATIONS = 256;

/** The exchange in progress: the calling pod's assertion, its deadline, and the `Retry-After` of Azure AD's last answer. */
interface ExchangeScope {
  assertion: string;
  /** `performance.now()` past which the exchange has been given up: none of its requests may outlive it. */
  deadline: number;
  retryAfter?: string;
}

/** The bound on a request msal-node makes outside any exchange (it makes none today): every request has one. */
const UNSCOPED_REQUEST_TIMEOUT_MS = 10_000;
/** A request outlives its exchange's deadline by this, so the exchange's own timeout (which names it) wins the race. */
const REQUEST_GRACE_MS = 100;

/**
 * The exchange through msal-node: one ConfidentialClientApplication per identity. Each application fetches its
 * authority's OpenID discovery document before its first token; the network client answers every application
 * of a tenant with the one document (DiscoveryDocuments), so a node's first tokens cost Azure AD one discovery
 * per tenant, not one per identity.
 */
export class MsalExchange implements AadExchange {
  private readonly apps = new Map<string, ConfidentialClientApplication>();
  /**
   * The exchange in progress. msal-node 7 prefers the application's assertion callback over a per-request
   * one, so the callback reads the assertion of the request it runs for; and msal-node's errors carry no
   * headers, so the network client keeps Azure AD's `Retry-After` here for the classification.
   */
  private readonly scope = new AsyncLocalStorage<ExchangeScope>();
  private readonly network: INetworkModule;

  constructor(private readonly authorityHost: string) {
    this.network = recordingNetworkClient(new URL(authorityHost).origin, () => this.scope.getStore());
  }

  async exchange(req: ExchangeRequest, timeoutMs: number): Promise<ExchangedToken> {
    const app = this.app(req.clientId, req.tenantId);
    const scope: ExchangeScope = { assertion: req.assertion, deadline: performance.now() + timeoutMs };
    try {
      const result = await withTimeout(
        // msal-node would otherwise read MSAL_FORCE_REGION from the environment and send the exchange to a regional
        // host: the agent talks to its configured authority only.
        this.scope.run(scope, () => app.acquireTokenByClientCredential({ scopes: [req.scope], skipCache: true, azureRegion: 'DisableMsalForceRegion' })),
        timeoutMs,
        () => new AadExchangeError({ kind: 'unreachable', description: `Azure AD did not answer within ${timeoutMs} ms` }),
      );
      if (!result?.accessToken || !result.expiresOn) throw new AadExchangeError({ kind: 'unreachable', description: 'Azure AD answered without a token' });
      return { accessToken: result.accessToken, expiresOn: Math.floor(result.expiresOn.getTime() / 1000) };
    } catch (err) {
      if (err instanceof AadExchangeError) throw err;
      // Azure AD's own description (e.g. AADSTS70021: no matching federated credential) helps whoever debugs it.
      const e = err as { errorMessage?: string; message?: string };
      // Bounded where Azure AD's text enters: the pod's answer and the audit line carry it.
      const description = truncated((e.errorMessage ?? e.message ?? 'unknown error').split('\n')[0] ?? '', MAX_UPSTREAM_MESSAGE_CHARS);
      if (err instanceof msal.ServerError && err.status !== undefined) {
        throw new AadExchangeError({
          kind: 'refused',
          status: err.status,
          error: truncated(err.errorCode, MAX_UPSTREAM_CODE_CHARS),
          ...(err.errorNo !== undefined && Number.isFinite(Number(err.errorNo)) ? { aadsts: Number(err.errorNo) } : {}),
          description,
          ...(scope.retryAfter !== undefined ? { retryAfter: scope.retryAfter } : {}),
        });
      }
      // No answer from Azure AD itself: connection failures, discovery that failed, a body that is not Azure AD's.
      throw new AadExchangeError({ kind: 'unreachable', description });
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
      app = new msal.ConfidentialClientApplication({
        auth: {
          clientId,
          authority: `${this.authorityHost.replace(/\/+$/, '')}/${tenantId}`,
          // Only our authority: msal-node then skips instance discovery on login.microsoftonline.com.
          knownAuthorities: [new URL(this.authorityHost).host],
          clientAssertion: () => {
            const current = this.scope.getStore()?.assertion;
            return current ? Promise.resolve(current) : Promise.reject(new Error('no service-account assertion for this exchange'));
          },
        },
        system: {
          networkClient: this.network,
          // msal-node's default callback drops every line, but at its default level (Info) each exchange still
          // formats its info lines first, with a timestamp apiece; the agent reports failures from the errors.
          loggerOptions: { logLevel: msal.LogLevel.Error, piiLoggingEnabled: false },
        },
      });
      if (this.apps.size >= MAX_APPLICATIONS) this.apps.delete(this.apps.keys().next().value!);
    }
    this.apps.set(key, app);
    return app;
  }
}

/**
 * msal-node's requests over the agent's own HTTP client (http-client.ts: not fetch, whose parser costs the agent
 * ~16 MB), as msal-node's client makes them, reporting each answer's `Retry-After` (which msal-node's errors do
 * not carry) so throttling can be passed on with Azure AD's own interval.
 *
 * Each request ends by its exchange's deadline: msal-node gives its POSTs no timeout, and the exchange's own
 * timeout only stops waiting for msal-node, so without it an Azure AD that stalls would keep every connection
 * (and the exchange's promises) the agent ever opened to it.
 */
function recordingNetworkClient(authorityOrigin: string, exchange: () => ExchangeScope | undefined): INetworkModule {
  const discovery = new DiscoveryDocuments(authorityOrigin);
  const send = async <T>(method: 'GET' | 'POST', url: string, options: NetworkRequestOptions = {}, msalTimeoutMs?: number): Promise<NetworkResponse<T>> => {
    // msal-node takes its endpoints from the discovery document: the pod's assertion goes to the authority only,
    // whatever a document (or a proxy that answered for it) names.
    const origin = new URL(url).origin;
    if (origin !== authorityOrigin) throw new Error(`msal-node asked for ${origin}, which is not the authority ${authorityOrigin}: refused`);
    const known = method === 'GET' ? discovery.get(url) : undefined;
    // Parsed anew for each application: msal-node keeps what it is given.
    if (known) return { headers: { ...known.headers }, body: JSON.parse(known.text) as T, status: 200 };
    const current = exchange();
    const left = current ? Math.max(1, Math.ceil(current.deadline - performance.now())) + REQUEST_GRACE_MS : UNSCOPED_REQUEST_TIMEOUT_MS;
    const res = await requestText(url, {
      method,
      ...(options.headers ? { headers: options.headers } : {}),
      ...(method === 'POST' && options.body !== undefined ? { body: options.body } : {}),
      timeoutMs: msalTimeoutMs ? Math.min(msalTimeoutMs, left) : left,
    });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    if (current) current.retryAfter = headerValue(res.headers, 'retry-after');
    let body: T;
    try {
      body = JSON.parse(res.text) as T;
    } catch {
      throw new Error(`Azure AD answered ${res.status} with a body that is not JSON`);
    }
    if (method === 'GET' && res.status === 200) discovery.offer(url, headers, res.text, body);
    return { headers, body, status: res.status };
  };
  return {
    sendGetRequestAsync: (url, options, timeout) => send('GET', url, options, timeout),
    sendPostRequestAsync: (url, options) => send('POST', url, options),
  };
}
