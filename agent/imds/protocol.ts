/**
 * The IMDS wire protocol (reference §5): request parsing and the exact response shapes. Nothing here knows
 * about pods or Azure AD.
 */

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

export type Route = { kind: 'token' } | { kind: 'metadata'; path: string } | { kind: 'not_found' };

/** Case-insensitive, trailing slashes tolerated (msal-node lowercases and appends one). */
export function normalisePath(pathname: string): string {
  const lowered = pathname.toLowerCase().replace(/\/{2,}/g, '/');
  return lowered.length > 1 ? lowered.replace(/\/+$/, '') : lowered;
}

export function route(pathname: string): Route {
  const path = normalisePath(pathname);
  if (path === TOKEN_PATH) return { kind: 'token' };
  // Nothing else under /metadata/identity is ever proxied: the node's IMDS would answer with node identities.
  if (path === '/metadata/identity' || path.startsWith('/metadata/identity/')) return { kind: 'not_found' };
  if (path === '/metadata' || path.startsWith('/metadata/')) return { kind: 'metadata', path };
  return { kind: 'not_found' };
}

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The checks IMDS makes on every request before looking at identities, in IMDS's order. The bare probe that
 * @azure/identity sends (no Metadata header, no query) fails the Metadata check and gets IMDS's 400, which
 * the SDK reads as "IMDS is available" (anything but a 403 mentioning "unreachable").
 */
export function checkCommon(method: string | undefined, headers: Headers): void {
  // Real IMDS refuses forwarded requests; we never read the header for attribution either way.
  if (headers['x-forwarded-for'] !== undefined) throw badRequest('Request contains X-Forwarded-For header');
  if ((header(headers, 'metadata') ?? '').toLowerCase() !== 'true') throw badRequest('Required metadata header not specified');
  if (method !== 'GET') throw new ImdsError(405, 'invalid_request', `Method ${method ?? ''} not allowed`, { Allow: 'GET' });
}

/** Parses a token request's query; throws the IMDS error for every malformed one. */
export function parseTokenRequest(query: URLSearchParams): TokenRequest {
  const apiVersion = query.get('api-version');
  if (!apiVersion) throw badRequest("Required query variable 'api-version' is missing");
  if (!/^\d{4}-\d{2}-\d{2}$/.test(apiVersion) || apiVersion < MIN_API_VERSION) throw badRequest('Invalid version');
  const resource = query.get('resource');
  if (!resource) throw badRequest('Required audience parameter not specified');
  const given = (['client_id', 'object_id', 'msi_res_id', 'mi_res_id'] as const).filter((p) => query.get(p) !== null);
  if (given.length > 1) throw badRequest('Only one of client_id, object_id or msi_res_id may be specified');
  let hint: IdentityHint = { kind: 'none' };
  const param = given[0];
  if (param) {
    const value = query.get(param)!;
    if (!value) throw badRequest(`Empty ${param}`);
    hint = param === 'client_id' || param === 'object_id' ? { kind: param, value } : { kind: 'msi_res_id', value, param };
  }
  return { apiVersion, resource, hint, bypassCache: (query.get('bypass_cache') ?? '').toLowerCase() === 'true' };
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
