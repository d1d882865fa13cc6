/**
 * The IMDS wire protocol (reference §5): request parsing and the exact response shapes. Nothing here knows
 * about pods or Azure AD.
 */

import { proxyAllowed } from './metadata-allowlist.js';
import type { CanonicalTarget } from './target.js';

export const TOKEN_PATH = '/metadata/identity/oauth2/token';
export const MIN_API_VERSION = '2018-02-01';
export const MULTIPLE_IDENTITIES =
  'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request';

/** An IMDS error answer: JSON `{error, error_description}` with the status IMDS would use. */
export class ImdsError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(`${status} ${error}: ${description}`);
    this.name = 'ImdsError';
  }

  body(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}

export const badRequest = (description: string) => new ImdsError(400, 'invalid_request', description);

export function unavailable(description: string, retryAfterSeconds: number): ImdsError {
  return new ImdsError(503, 'service_unavailable', description, { 'Retry-After': String(retryAfterSeconds) });
}

/** Which identity the caller asked for, if any. `msi_res_id` and `mi_res_id` are the same hint. */
export type IdentityHint =
  | { kind: 'none' }
  | { kind: 'client_id'; value: string }
  | { kind: 'object_id'; value: string }
  | { kind: 'msi_res_id'; value: string; param: 'msi_res_id' | 'mi_res_id' };

export interface TokenRequest {
  apiVersion: string;
  resource: string;
  hint: IdentityHint;
  bypassCache: boolean;
}

export type Route =
  | { kind: 'token' }
  /** On the metadata proxy's allow-list; `path` is the canonical path to forward. */
  | { kind: 'metadata'; path: string; key: string }
  /** Under /metadata but not on the allow-list. */
  | { kind: 'not_allowed' }
  /** A separator spelled `%2F`, `%5C` or a backslash outside the token path. */
  | { kind: 'disguised_separator' }
  | { kind: 'not_found' };

/**
 * Decides on the canonical target only. Whatever decodes to the token path is a token request, which the agent
 * answers itself; nothing else under /metadata/identity is ever answered or forwarded (the node's IMDS would
 * answer with the node's identities). Other /metadata paths are forwarded only when on the allow-list.
 */
export function route(target: CanonicalTarget): Route {
  const key = target.key;
  if (key === TOKEN_PATH) return { kind: 'token' };
  if (key === '/metadata/identity' || key.startsWith('/metadata/identity/')) return { kind: 'not_found' };
  if (key !== '/metadata' && !key.startsWith('/metadata/')) return { kind: 'not_found' };
  if (target.disguisedSeparator) return { kind: 'disguised_separator' };
  if (!proxyAllowed(key)) return { kind: 'not_allowed' };
  return { kind: 'metadata', path: target.path, key };
}

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The checks IMDS makes on every request before looking at identities. The method first: like any router,
 * IMDS picks the route by method and path before the route looks at headers. The bare probe that
 * @azure/identity sends (a GET with no Metadata header and no query) fails the Metadata check and gets IMDS's
 * 400, which the SDK reads as "IMDS is available" (anything but a 403 mentioning "unreachable").
 */
export function checkCommon(method: string | undefined, headers: Headers): void {
  // IMDS documents GET as its only verb for these paths and answers 405 to others.
  if (method !== 'GET') throw new ImdsError(405, 'invalid_request', `Method ${method ?? ''} not allowed: only GET is supported`, { Allow: 'GET' });
  // Real IMDS refuses forwarded requests; we never read the header for attribution either way.
  if (headers['x-forwarded-for'] !== undefined) throw badRequest('Request contains X-Forwarded-For header');
  if ((header(headers, 'metadata') ?? '').toLowerCase() !== 'true') throw badRequest('Required metadata header not specified');
}

/**
 * The query as one value per parameter, names lowercased. A parameter given twice (in any letter case) is
 * IMDS's 400: with two values, the agent and whatever reads the query after it could each pick a different
 * one.
 */
export function singleValuedQuery(query: URLSearchParams): Map<string, string> {
  const values = new Map<string, string>();
  for (const [name, value] of query) {
    const key = name.toLowerCase();
    if (values.has(key)) throw badRequest(`Query parameter '${key}' is specified more than once`);
    values.set(key, value);
  }
  return values;
}

const SCOPE_SUFFIX = '/.default';

/**
 * The v1 resource a request names. A v2 scope (`<resource>/.default`) names the same audience as its
 * resource, so the suffix is taken off once: the token's `aud`, the echoed `resource` and the cache key then
 * all agree, whichever way the caller wrote it.
 */
export function canonicalResource(resource: string): string {
  // Whitespace would make one resource several scopes upstream.
  if (/[\s\p{Cc}]/u.test(resource)) throw badRequest('Invalid resource: whitespace or control characters are not allowed');
  const canonical = resource.toLowerCase().endsWith(SCOPE_SUFFIX) ? resource.slice(0, -SCOPE_SUFFIX.length) : resource;
  if (!canonical) throw badRequest('Required audience parameter not specified');
  return canonical;
}

const HINTS = ['client_id', 'object_id', 'msi_res_id', 'mi_res_id'] as const;

/** Parses a token request's query; throws the IMDS error for every malformed one. */
export function parseTokenRequest(query: URLSearchParams): TokenRequest {
  const values = singleValuedQuery(query);
  const apiVersion = values.get('api-version');
  if (!apiVersion) throw badRequest("Required query variable 'api-version' is missing");
  if (!/^\d{4}-\d{2}-\d{2}$/.test(apiVersion) || apiVersion < MIN_API_VERSION) throw badRequest('Invalid version');
  const resource = values.get('resource');
  if (!resource) throw badRequest('Required audience parameter not specified');
  const given = HINTS.filter((p) => values.has(p));
  if (given.length > 1) throw badRequest('Only one of client_id, object_id or msi_res_id may be specified');
  let hint: IdentityHint = { kind: 'none' };
  const param = given[0];
  if (param) {
    const value = values.get(param)!;
    if (!value) throw badRequest(`Empty ${param}`);
    hint = param === 'client_id' || param === 'object_id' ? { kind: param, value } : { kind: 'msi_res_id', value, param };
  }
  return { apiVersion, resource: canonicalResource(resource), hint, bypassCache: (values.get('bypass_cache') ?? '').toLowerCase() === 'true' };
}

/** The query a token request is forwarded with: exactly what was parsed and decided on, nothing else. */
export function tokenQuery(request: TokenRequest): URLSearchParams {
  const query = new URLSearchParams({ 'api-version': request.apiVersion, resource: request.resource });
  if (request.hint.kind !== 'none') query.set(request.hint.kind === 'msi_res_id' ? request.hint.param : request.hint.kind, request.hint.value);
  if (request.bypassCache) query.set('bypass_cache', 'true');
  return query;
}

export interface IssuedToken {
  accessToken: string;
  /** Unix seconds. */
  expiresOn: number;
  /** Unix seconds. */
  notBefore: number;
}

/** IMDS's success body: every value a string; object_id / msi_res_id echoed when they were asked for. */
export function tokenBody(token: IssuedToken, clientId: string, request: TokenRequest, nowSeconds: number): Record<string, string> {
  const expiresIn = Math.max(0, token.expiresOn - nowSeconds);
  const body: Record<string, string> = {
    access_token: token.accessToken,
    client_id: clientId,
    expires_in: String(expiresIn),
    expires_on: String(token.expiresOn),
    // A cached token's extended lifetime is not tracked; the remaining lifetime is the honest answer.
    ext_expires_in: String(expiresIn),
    not_before: String(token.notBefore),
    refresh_token: '',
    resource: request.resource,
    token_type: 'Bearer',
  };
  if (request.hint.kind === 'object_id') body['object_id'] = request.hint.value;
  if (request.hint.kind === 'msi_res_id') body['msi_res_id'] = request.hint.value;
  return body;
}
