import { ClientSecretCredential, DefaultAzureCredential, type TokenCredential } from '@azure/identity';

export const ARM_SCOPE = 'https://management.azure.com/.default';

export interface CredentialOptions {
  /** With all three, a service principal with a secret; otherwise DefaultAzureCredential (workload identity, managed identity, env). */
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** Azure AD authority, e.g. https://login.microsoftonline.com (or the emulator's). */
  authorityHost?: string;
}

/** The operator's own Azure credential. Never logged. */
export function operatorCredential(opts: CredentialOptions): TokenCredential {
  if (opts.tenantId && opts.clientId && opts.clientSecret) {
    return new ClientSecretCredential(opts.tenantId, opts.clientId, opts.clientSecret, {
      ...(opts.authorityHost ? { authorityHost: opts.authorityHost, disableInstanceDiscovery: true } : {}),
    });
  }
  return new DefaultAzureCredential(opts.authorityHost ? { authorityHost: opts.authorityHost } : {});
}

/**
 * Options every ARM client gets: the endpoint (real ARM or the emulator), real-looking token scopes, and no
 * SDK-internal retries. A 429 must surface as ThrottledError so the work queue requeues that one key after
 * Retry-After instead of a worker sleeping inside the SDK; 5xx are retried by the queue's per-key backoff.
 */
export function armClientOptions(endpoint: string) {
  return { endpoint, credentialScopes: [ARM_SCOPE], retryOptions: { maxRetries: 0 } };
}
