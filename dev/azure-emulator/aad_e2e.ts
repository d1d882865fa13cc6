/**
 * Contract: Azure AD token endpoint through @azure/identity (client secret) and @azure/msal-node (client
 * assertion / workload identity federation). The federated issuer here is a tiny local HTTPS OIDC server with
 * its own CA and a bearer-protected discovery, standing in for the local kube-apiserver.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ClientSecretCredential } from '@azure/identity';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { waitFor } from '../support/wait.js';
import { JWT_BEARER } from './aad.js';
import { ensureCa, issueServerCertificate, makeTempDir, removeDir } from './tls.js';
import { ARM_SCOPE, claimsOf, federatedApp, rawRequest, startFixture, type Fixture } from './test-fixture.js';

const EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';
const ISSUER_BEARER = 'local-issuer-reader-token';

interface TestIssuer {
  issuer: string;
  caPem: string;
  sign(claims: Record<string, unknown>, opts?: { expiresInSeconds?: number; key?: CryptoKey }): Promise<string>;
  requests: number;
  stop(): Promise<void>;
}

async function startTestIssuer(): Promise<TestIssuer> {
  const dir = await makeTempDir('test-issuer-');
  const ca = await ensureCa(dir);
  const cert = await issueServerCertificate(ca, ['127.0.0.1'], dir);
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'test-kid-1', use: 'sig', alg: 'RS256' };
  let issuer = '';
  const state = { requests: 0 };
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    state.requests++;
    if (req.headers.authorization !== `Bearer ${ISSUER_BEARER}`) {
      res.writeHead(401).end();
      return;
    }
    const body =
      req.url === '/.well-known/openid-configuration'
        ? { issuer, jwks_uri: `${issuer}/openid/v1/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] }
        : req.url === '/openid/v1/jwks'
          ? { keys: [jwk] }
          : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    caPem: ca.certPem,
    get requests() {
      return state.requests;
    },
    async sign(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + (opts.expiresInSeconds ?? 3600);
      return new SignJWT({ iss: issuer, aud: [EXCHANGE_AUDIENCE], iat: Math.min(now, exp - 60), nbf: Math.min(now, exp - 60), exp, ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: 'test-kid-1' })
        .sign(opts.key ?? privateKey);
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await removeDir(dir);
    },
  };
}

describe('Azure AD token endpoint', () => {
  let fx: Fixture;
  let issuer: TestIssuer;
  let identity: { id: string; clientId: string; principalId: string };
  const subject = 'system:serviceaccount:team-a:workload';

  before(async () => {
    [fx, issuer] = await Promise.all([startFixture(), startTestIssuer()]);
    identity = fx.emu.seed.identity({ resourceGroup: 'rg-wi', name: 'wi-identity' });
    fx.emu.seed.trustIssuer({ issuer: issuer.issuer, fetchOptions: { ca: issuer.caPem, headers: { authorization: `Bearer ${ISSUER_BEARER}` } } });
    // The federated credential goes in through ARM like the operator would write it.
    const token = (await fx.credential.getToken(ARM_SCOPE)).token;
    const res = await rawRequest(`${fx.emu.armEndpoint}${identity.id}/federatedIdentityCredentials/team-a-workload?api-version=2024-11-30`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ properties: { issuer: issuer.issuer, subject, audiences: [EXCHANGE_AUDIENCE] } }),
    });
    assert.equal(res.status, 201, res.text);
  });
  after(async () => {
    await fx.emu.stop();
    await issuer.stop();
  });

  const app = (assertion: string) => federatedApp(fx.emu, identity.clientId, assertion);

  async function refusal(assertion: string): Promise<{ errorCode: string; errorMessage: string }> {
    try {
      await app(assertion).acquireTokenByClientCredential({ scopes: [ARM_SCOPE], skipCache: true });
    } catch (err) {
      return err as { errorCode: string; errorMessage: string };
    }
    return assert.fail('expected the token request to be refused');
  }

  it('ClientSecretCredential gets an ARM token that says whose it is', async () => {
    const token = await fx.credential.getToken(ARM_SCOPE);
    const claims = claimsOf(token.token);
    assert.equal(claims['aud'], 'https://management.azure.com');
    assert.equal(claims['iss'], `https://sts.windows.net/${fx.emu.tenantId}/`);
    assert.equal(claims['oid'], fx.operator.principalId);
    assert.equal(claims['appid'], fx.operator.clientId);
    assert.equal(claims['azp'], fx.operator.clientId);
    assert.equal(claims['tid'], fx.emu.tenantId);
    assert.ok(Number(claims['exp']) > Date.now() / 1000 + 3000);
    const header = JSON.parse(Buffer.from(token.token.split('.')[0] ?? '', 'base64url').toString()) as { kid: string; alg: string };
    assert.equal(header.alg, 'RS256');
    assert.equal(header.kid, (fx.emu.jwks().keys[0] as { kid: string }).kid);
    // Exactly the two requests of reference §2.
    assert.deepEqual(Object.keys(fx.emu.requests.counts()).filter((k) => k.includes('aad.')).sort(), ['GET aad.openidConfiguration', 'POST aad.token']);
  });

  it('refuses a wrong client secret and an unknown client', async () => {
    const wrong = new ClientSecretCredential(fx.emu.tenantId, fx.operator.clientId, 'not-the-secret', { authorityHost: fx.emu.authorityHost, disableInstanceDiscovery: true });
    await assert.rejects(wrong.getToken(ARM_SCOPE), /AADSTS7000215/);
    const unknown = new ClientSecretCredential(fx.emu.tenantId, randomUUID(), 'x', { authorityHost: fx.emu.authorityHost, disableInstanceDiscovery: true });
    await assert.rejects(unknown.getToken(ARM_SCOPE), /AADSTS700016/);
  });

  it('msal-node client assertion: a federated token is exchanged for the identity’s access token, with JWKS caching', async () => {
    const assertion = await issuer.sign({ sub: subject });
    const result = await app(assertion).acquireTokenByClientCredential({ scopes: [ARM_SCOPE], skipCache: true });
    assert.ok(result?.accessToken);
    const claims = claimsOf(result.accessToken);
    assert.equal(claims['oid'], identity.principalId);
    assert.equal(claims['appid'], identity.clientId);
    assert.equal(claims['xms_mirid'], identity.id);
    assert.equal(claims['tid'], fx.emu.tenantId);
    const fetches = fx.emu.issuerFetches();
    assert.equal(fetches, 2, 'discovery + JWKS');
    const second = await app(await issuer.sign({ sub: subject })).acquireTokenByClientCredential({ scopes: [ARM_SCOPE], skipCache: true });
    assert.ok(second?.accessToken);
    assert.equal(fx.emu.issuerFetches(), fetches, 'JWKS served from cache');
  });

  it('refuses a tampered assertion', async () => {
    const assertion = await issuer.sign({ sub: subject });
    const [h, p, s] = assertion.split('.');
    const payload = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
    payload['exp'] = Number(payload['exp']) + 86_400;
    const tampered = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
    const err = await refusal(tampered);
    assert.equal(err.errorCode, 'invalid_client');
    assert.match(err.errorMessage, /AADSTS700027/);
    const otherKey = (await generateKeyPair('RS256')).privateKey;
    assert.match((await refusal(await issuer.sign({ sub: subject }, { key: otherKey }))).errorMessage, /AADSTS700027/);
  });

  it('refuses a wrong subject, a wrong audience, an unknown issuer and an expired assertion', async () => {
    const wrongSub = await refusal(await issuer.sign({ sub: 'system:serviceaccount:team-a:other' }));
    assert.equal(wrongSub.errorCode, 'invalid_client');
    assert.match(wrongSub.errorMessage, /AADSTS70021: No matching federated identity record found/);
    const wrongAud = await refusal(await issuer.sign({ sub: subject, aud: ['api://SomethingElse'] }));
    assert.match(wrongAud.errorMessage, /AADSTS70021/);
    const foreign = await refusal(await issuer.sign({ sub: subject, iss: 'https://elsewhere.example.test' }));
    assert.match(foreign.errorMessage, /AADSTS70021/);
    const expired = await refusal(await issuer.sign({ sub: subject }, { expiresInSeconds: -600 }));
    assert.match(expired.errorMessage, /AADSTS700024/);
    const garbage = await refusal('not-a-jwt');
    assert.match(garbage.errorMessage, /AADSTS50027/);
  });

  it('propagation: a new federated credential gets AADSTS70021 until its delay has passed, a rewrite that changes nothing does not restart it', async () => {
    const delayMs = 1_500;
    const fresh = 'system:serviceaccount:team-a:fresh';
    const armToken = (await fx.credential.getToken(ARM_SCOPE)).token;
    const putCredential = () =>
      rawRequest(`${fx.emu.armEndpoint}${identity.id}/federatedIdentityCredentials/team-a-fresh?api-version=2024-11-30`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${armToken}` },
        body: JSON.stringify({ properties: { issuer: issuer.issuer, subject: fresh, audiences: [EXCHANGE_AUDIENCE] } }),
      });
    const exchange = async () =>
      rawRequest(`${fx.emu.authorityHost}/${fx.emu.tenantId}/oauth2/v2.0/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_id: identity.clientId,
          scope: ARM_SCOPE,
          client_assertion_type: JWT_BEARER,
          client_assertion: await issuer.sign({ sub: fresh }),
        }).toString(),
      });
    fx.emu.settings.ficPropagationDelayMs = delayMs;
    try {
      const written = Date.now();
      assert.equal((await putCredential()).status, 201);
      const refused = await exchange();
      assert.equal(refused.status, 401);
      const body = refused.json as Record<string, unknown>;
      // Exactly what the real service answers for a credential it does not see (yet).
      assert.equal(body['error'], 'invalid_client');
      assert.deepEqual(body['error_codes'], [70021]);
      assert.match(String(body['error_description']), /^AADSTS70021: No matching federated identity record found for presented assertion\. Assertion Issuer: '.+'\. Assertion Subject: 'system:serviceaccount:team-a:fresh'\..*Trace ID: .+ Correlation ID: .+ Timestamp: /);
      for (const key of ['timestamp', 'trace_id', 'correlation_id']) assert.equal(typeof body[key], 'string', key);
      // The same credential written again unchanged (as a reconciler does) is no new credential.
      assert.equal((await putCredential()).status, 200);
      const accepted = await waitFor('the new credential to be accepted', async () => ((await exchange()).status === 200 ? Date.now() : undefined), { timeoutMs: 10_000, intervalMs: 100 });
      assert.ok(accepted - written >= delayMs, `accepted after ${accepted - written} ms, before the ${delayMs} ms delay`);
      assert.ok(accepted - written < delayMs + 3_000, `the unchanged rewrite restarted propagation (${accepted - written} ms)`);
    } finally {
      fx.emu.settings.ficPropagationDelayMs = 0;
    }
  });

  it('answers Azure AD-shaped errors for malformed token requests', async () => {
    const res = await rawRequest(`${fx.emu.authorityHost}/${fx.emu.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: fx.operator.clientId, client_secret: fx.operator.clientSecret, scope: 'https://management.azure.com/user_impersonation' }).toString(),
    });
    assert.equal(res.status, 400);
    const body = res.json as Record<string, unknown>;
    assert.equal(body['error'], 'invalid_scope');
    assert.deepEqual(body['error_codes'], [1002012]);
    for (const key of ['error_description', 'timestamp', 'trace_id', 'correlation_id']) assert.equal(typeof body[key], 'string', key);
  });

  it('serves openid-configuration, instance discovery and keys', async () => {
    const config = (await rawRequest(`${fx.emu.authorityHost}/${fx.emu.tenantId}/v2.0/.well-known/openid-configuration`)).json as Record<string, string>;
    assert.equal(config['issuer'], `${fx.emu.authorityHost}/${fx.emu.tenantId}/v2.0`);
    for (const key of ['token_endpoint', 'authorization_endpoint', 'end_session_endpoint', 'jwks_uri']) assert.ok(config[key]?.startsWith(fx.emu.authorityHost), key);
    const keys = (await rawRequest(config['jwks_uri'] ?? '')).json as { keys: { kid: string }[] };
    assert.equal(keys.keys.length, 1);
    const discovery = (await rawRequest(`${fx.emu.authorityHost}/common/discovery/instance?api-version=1.1&authorization_endpoint=${encodeURIComponent(config['authorization_endpoint'] ?? '')}`)).json as Record<string, unknown>;
    assert.equal(discovery['tenant_discovery_endpoint'], `${fx.emu.authorityHost}/${fx.emu.tenantId}/v2.0/.well-known/openid-configuration`);
  });
});
