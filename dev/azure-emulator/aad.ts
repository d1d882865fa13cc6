/** Azure AD (v2 endpoints as msal-node 7 uses them): OpenID configuration, instance discovery, keys, token. */
import { decodeJwt } from 'jose';
import { aadError, type RequestContext, type Route } from './router.js';
import type { ArmSettings } from './arm/common.js';
import type { IssuerTrust } from './issuers.js';
import type { AzureState } from './state.js';
import type { TokenSigner } from './tokens.js';

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface AadDeps {
  state: AzureState;
  signer: TokenSigner;
  issuers: IssuerTrust;
  settings: Pick<ArmSettings, 'ficPropagationDelayMs'>;
}

export function aadRoutes(deps: AadDeps): Route[] {
  const { state, signer } = deps;
  const tenantOk = (t: string, allowAliases: boolean) =>
    t.toLowerCase() === state.tenantId.toLowerCase() || (allowAliases && ['common', 'organizations'].includes(t.toLowerCase()));
  const requireTenant = (t: string, allowAliases = false) => {
    if (!tenantOk(t, allowAliases)) {
      throw aadError(400, 'invalid_request', 90002, `Tenant '${t}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
    }
  };

  return [
    {
      name: 'aad.openidConfiguration',
      method: 'GET',
      family: 'aad',
      pattern: /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/i,
      handle(ctx) {
        const t = ctx.params[0] ?? '';
        requireTenant(t, true);
        const tenant = tenantOk(t, false) ? state.tenantId : '{tenantid}';
        const base = `${ctx.baseUrl}/${t}`;
        return {
          status: 200,
          body: {
            token_endpoint: `${base}/oauth2/v2.0/token`,
            token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
            jwks_uri: `${base}/discovery/v2.0/keys`,
            response_modes_supported: ['query', 'fragment', 'form_post'],
            subject_types_supported: ['pairwise'],
            id_token_signing_alg_values_supported: ['RS256'],
            response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
            scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
            issuer: `${ctx.baseUrl}/${tenant}/v2.0`,
            request_uri_parameter_supported: false,
            userinfo_endpoint: `${ctx.baseUrl}/oidc/userinfo`,
            authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
            device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
            http_logout_supported: true,
            frontchannel_logout_supported: true,
            end_session_endpoint: `${base}/oauth2/v2.0/logout`,
            claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid', 'oid'],
            tenant_region_scope: 'NA',
            cloud_instance_name: 'microsoftonline.com',
            cloud_graph_host_name: 'graph.windows.net',
            msgraph_host: 'graph.microsoft.com',
            rbac_url: 'https://pas.windows.net',
          },
        };
      },
    },
    {
      name: 'aad.instanceDiscovery',
      method: 'GET',
      family: 'aad',
      pattern: /^\/(?:common|[^/]+)\/discovery\/instance$/i,
      handle(ctx) {
        const host = ctx.baseUrl.replace(/^https?:\/\//, '');
        return {
          status: 200,
          body: {
            tenant_discovery_endpoint: `${ctx.baseUrl}/${state.tenantId}/v2.0/.well-known/openid-configuration`,
            'api-version': '1.1',
            metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
          },
        };
      },
    },
    {
      name: 'aad.keys',
      method: 'GET',
      family: 'aad',
      pattern: /^\/([^/]+)\/discovery(?:\/v2\.0)?\/keys$/i,
      handle(ctx) {
        requireTenant(ctx.params[0] ?? '', true);
        return { status: 200, body: signer.jwks() };
      },
    },
    {
      name: 'aad.token',
      method: 'POST',
      family: 'aad',
      pattern: /^\/([^/]+)\/oauth2\/v2\.0\/token$/i,
      handle: (ctx) => token(deps, ctx),
    },
  ];
}

async function token(deps: AadDeps, ctx: RequestContext) {
  const { state, signer, issuers } = deps;
  const tenant = ctx.params[0] ?? '';
  if (tenant.toLowerCase() !== state.tenantId.toLowerCase()) {
    throw aadError(400, 'invalid_request', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
  }
  const contentType = String(ctx.req.headers['content-type'] ?? '');
  if (!contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw aadError(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'.");
  }
  const form = ctx.form();
  const required = (name: string) => {
    const v = form.get(name);
    if (!v) throw aadError(400, 'invalid_request', 900144, `The request body must contain the following parameter: '${name}'.`);
    return v;
  };
  const grantType = required('grant_type');
  if (grantType !== 'client_credentials') {
    throw aadError(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grantType}'.`);
  }
  const clientId = required('client_id').toLowerCase();
  const scope = required('scope');
  const scopes = scope.split(' ').filter(Boolean);
  const resource = scopes.length === 1 && scopes[0]?.endsWith('/.default') ? scopes[0].slice(0, -'/.default'.length) : undefined;
  if (!resource) {
    throw aadError(400, 'invalid_scope', 1002012, `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
  }
  const secret = form.get('client_secret');
  const assertion = form.get('client_assertion');
  let principalId: string;
  let miResourceId: string | undefined;
  if (secret !== null) {
    const sp = state.servicePrincipals.get(clientId);
    if (!sp) {
      throw aadError(400, 'unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${state.tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`);
    }
    if (sp.clientSecret !== secret) {
      throw aadError(401, 'invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`);
    }
    principalId = sp.principalId;
  } else if (assertion !== null) {
    if (form.get('client_assertion_type') !== JWT_BEARER) {
      throw aadError(400, 'invalid_request', 50027, `Invalid client_assertion_type: expected '${JWT_BEARER}'.`);
    }
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(assertion);
    } catch {
      throw aadError(400, 'invalid_request', 50027, 'JWT token is invalid or malformed.');
    }
    const identity = state.identityByClientId(clientId);
    if (!identity) {
      throw aadError(400, 'unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${state.tenantId}'.`);
    }
    const iss = typeof claims.iss === 'string' ? claims.iss : '';
    const sub = typeof claims.sub === 'string' ? claims.sub : '';
    const auds = (Array.isArray(claims.aud) ? claims.aud : [claims.aud]).filter((a): a is string => typeof a === 'string');
    const noMatch = () =>
      aadError(401, 'invalid_client', 70021, `No matching federated identity record found for presented assertion. Assertion Issuer: '${iss}'. Assertion Subject: '${sub}'. Assertion Audience: '${auds.join(',')}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation`);
    // A credential still propagating is not there yet as far as the token endpoint knows: the same
    // AADSTS70021 as a missing one, which is what makes the first exchange after a new credential fail.
    const now = Date.now();
    const candidates = [...identity.fics.values()].filter((f) => f.issuer === iss && f.acceptedFrom <= now);
    if (candidates.length === 0) throw noMatch();
    const check = await issuers.verify(assertion, iss);
    if (!check.ok) {
      if (check.reason === 'expired') {
        throw aadError(401, 'invalid_client', 700024, `Client assertion is not within its valid time range. Current time: ${new Date().toISOString()}, expiry time of assertion ${claims.exp !== undefined ? new Date(claims.exp * 1000).toISOString() : 'none'}.`);
      }
      if (check.reason === 'unreachable') {
        throw aadError(401, 'invalid_client', 50166, `Request to External OIDC endpoint failed: ${check.detail}`);
      }
      throw aadError(401, 'invalid_client', 700027, 'Client assertion failed signature validation.');
    }
    if (!candidates.some((f) => f.subject === sub && f.audiences.some((a) => auds.includes(a)))) throw noMatch();
    principalId = identity.principalId;
    miResourceId = identity.id;
  } else {
    throw aadError(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
  }
  const issued = await signer.issue({ resource, principalId, clientId, ...(miResourceId ? { miResourceId } : {}) });
  const expiresIn = issued.expiresOn - Math.floor(Date.now() / 1000);
  return { status: 200, body: { token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: issued.token } };
}
