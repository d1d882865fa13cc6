/**
 * Federated issuers: how the emulated Azure AD finds the JWKS that signs a client assertion. Like Azure AD it
 * follows `${issuer}/.well-known/openid-configuration` → `jwks_uri`, and caches the keys. A harness can say how
 * to reach an issuer that is not publicly trusted (a local kube-apiserver: its own CA, maybe a bearer token).
 */
import { request } from 'node:https';
import tls from 'node:tls';
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

export interface IssuerFetchOptions {
  /** Extra CA (PEM) trusted for discovery and JWKS requests. */
  ca?: string;
  /** Extra request headers, e.g. `{ Authorization: 'Bearer …' }`. */
  headers?: Record<string, string>;
}

export interface TrustIssuerOptions {
  issuer: string;
  /** Skip OIDC discovery and fetch the keys from here. */
  jwksUri?: string;
  /** Shorthand for `fetchOptions.ca`. */
  ca?: string;
  fetchOptions?: IssuerFetchOptions;
  /** Static keys: no fetching at all. */
  jwks?: JSONWebKeySet;
}

export type AssertionCheck =
  | { ok: true; payload: JWTPayload }
  | { ok: false; reason: 'expired' | 'signature' | 'unreachable'; detail: string };

interface CachedKeys {
  keys: ReturnType<typeof createLocalJWKSet>;
  fetchedAt: number;
}

const CACHE_TTL_MS = 5 * 60_000;
/** Minimum time between refetches triggered by an unknown `kid` (key rotation). */
const REFETCH_COOLDOWN_MS = 5_000;

export class IssuerTrust {
  private readonly trusted = new Map<string, TrustIssuerOptions>();
  private readonly cache = new Map<string, CachedKeys>();
  /** Discovery/JWKS fetches made, for tests that check caching. */
  fetches = 0;

  trust(options: TrustIssuerOptions): void {
    this.trusted.set(options.issuer, options);
    this.cache.delete(options.issuer);
  }

  async verify(assertion: string, issuer: string): Promise<AssertionCheck> {
    let cached: CachedKeys;
    try {
      cached = await this.keysFor(issuer, false);
    } catch (err) {
      return { ok: false, reason: 'unreachable', detail: (err as Error).message };
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const { payload } = await jwtVerify(assertion, cached.keys, { issuer, algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'PS256'] });
        return { ok: true, payload };
      } catch (err) {
        if (err instanceof errors.JWTExpired) return { ok: false, reason: 'expired', detail: err.message };
        const rotated = err instanceof errors.JWKSNoMatchingKey && attempt === 0 && Date.now() - cached.fetchedAt > REFETCH_COOLDOWN_MS;
        if (!rotated) return { ok: false, reason: 'signature', detail: (err as Error).message };
        try {
          cached = await this.keysFor(issuer, true);
        } catch (fetchErr) {
          return { ok: false, reason: 'unreachable', detail: (fetchErr as Error).message };
        }
      }
    }
  }

  private async keysFor(issuer: string, force: boolean): Promise<CachedKeys> {
    const hit = this.cache.get(issuer);
    if (hit && !force && Date.now() - hit.fetchedAt < CACHE_TTL_MS) return hit;
    const options = this.trusted.get(issuer) ?? { issuer };
    let jwks = options.jwks;
    if (!jwks) {
      const fetchOptions: IssuerFetchOptions = { ...options.fetchOptions, ...(options.ca ? { ca: options.ca } : {}) };
      let jwksUri = options.jwksUri;
      if (!jwksUri) {
        const discovery = (await this.getJson(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`, fetchOptions)) as { jwks_uri?: unknown; issuer?: unknown };
        if (typeof discovery.jwks_uri !== 'string') throw new Error(`OIDC discovery for ${issuer} has no jwks_uri`);
        jwksUri = discovery.jwks_uri;
      }
      jwks = (await this.getJson(jwksUri, fetchOptions)) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error(`JWKS at ${jwksUri} has no keys`);
    }
    const entry: CachedKeys = { keys: createLocalJWKSet(jwks), fetchedAt: Date.now() };
    this.cache.set(issuer, entry);
    return entry;
  }

  private getJson(url: string, options: IssuerFetchOptions): Promise<unknown> {
    this.fetches++;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'GET',
          // kube-apiserver serves its JWKS as application/jwk-set+json and answers 406 to a plain JSON Accept.
          headers: { accept: 'application/json, application/jwk-set+json', ...options.headers },
          ...(options.ca ? { ca: [...tls.getCACertificates('default'), options.ca] } : {}),
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 0) >= 300) return reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
            try {
              resolve(JSON.parse(text));
            } catch {
              reject(new Error(`GET ${url}: not JSON`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
      req.on('error', reject);
      req.end();
    });
  }
}
