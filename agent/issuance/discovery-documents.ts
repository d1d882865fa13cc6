/** How long a tenant's OpenID discovery document is reused, and for how many authorities at most. */
const DISCOVERY_TTL_MS = 60 * 60_000;
const MAX_DISCOVERY_DOCUMENTS = 64;
/** Azure AD's documents are about 2 KB: a larger one is used once, never kept (64 of 4 MB would be 256 MB). */
const MAX_DISCOVERY_DOCUMENT_CHARS = 64 * 1024;
/** The endpoints msal-node requires of a discovery document (it rejects one without them). */
const ENDPOINTS = ['token_endpoint', 'authorization_endpoint', 'jwks_uri'] as const;

/**
 * Azure AD's OpenID discovery documents by URL, shared by every application of a tenant. Only a document that
 * msal-node would accept and that names endpoints on the authority itself is kept: anything else (a failure, a
 * 200 from a broken front end, endpoints elsewhere) is asked again by the next exchange, not served for an hour.
 */
export class DiscoveryDocuments {
  private readonly documents = new Map<string, { headers: Record<string, string>; text: string; until: number }>();

  constructor(
    private readonly authorityOrigin: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(url: string): { headers: Record<string, string>; text: string } | undefined {
    const known = this.documents.get(url);
    if (!known) return undefined;
    if (known.until > this.now()) return known;
    this.documents.delete(url);
    return undefined;
  }

  /** A GET answered 200: kept if it is the discovery document of the authority, `body` being `text` parsed. */
  offer(url: string, headers: Record<string, string>, text: string, body: unknown): void {
    if (!new URL(url).pathname.endsWith('/.well-known/openid-configuration')) return;
    if (text.length > MAX_DISCOVERY_DOCUMENT_CHARS || !this.isDiscoveryDocument(body)) return;
    this.documents.delete(url);
    this.documents.set(url, { headers, text, until: this.now() + DISCOVERY_TTL_MS });
    if (this.documents.size > MAX_DISCOVERY_DOCUMENTS) this.documents.delete(this.documents.keys().next().value!);
  }

  private isDiscoveryDocument(body: unknown): boolean {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
    const doc = body as Record<string, unknown>;
    if (typeof doc.issuer !== 'string') return false;
    return ENDPOINTS.every((name) => {
      const value = doc[name];
      if (typeof value !== 'string') return false;
      try {
        return new URL(value).origin === this.authorityOrigin;
      } catch {
        return false;
      }
    });
  }
}
