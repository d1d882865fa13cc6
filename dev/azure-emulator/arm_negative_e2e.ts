/** Contract: what ARM refuses (bearer, api-version, body) and fault injection seen through the SDKs' own retries. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { SignJWT, generateKeyPair } from 'jose';
import { operatorToken, rawRequest, startFixture, type Fixture, restError } from './test-fixture.js';

const API = 'api-version=2024-11-30';

function staticCredential(token: string): TokenCredential {
  return { getToken: async (): Promise<AccessToken> => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }) };
}

describe('ARM refusals and fault injection', () => {
  let fx: Fixture;
  let identityUrl: string;
  before(async () => {
    fx = await startFixture();
    fx.emu.seed.identity({ resourceGroup: 'rg-neg', name: 'neg-id' });
    identityUrl = `${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/resourceGroups/rg-neg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/neg-id`;
  });
  after(() => fx.emu.stop());
  const msiWith = (credential: TokenCredential) => new ManagedServiceIdentityClient(credential, fx.emu.subscriptionId, fx.clientOptions);

  it('refuses an expired bearer token', async () => {
    const expired = await fx.emu.issueToken({ resource: 'https://management.azure.com/', principalId: fx.operator.principalId, clientId: fx.operator.clientId, lifetimeSeconds: -3600 });
    const err = await restError(msiWith(staticCredential(expired.token)).userAssignedIdentities.get('rg-neg', 'neg-id'));
    assert.equal(err.statusCode, 401);
    assert.equal(err.code, 'ExpiredAuthenticationToken');
  });

  it('refuses a foreign bearer token (same claims, another signer) and a wrong audience', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const foreign = await new SignJWT({ aud: 'https://management.azure.com/', iss: `https://sts.windows.net/${fx.emu.tenantId}/`, tid: fx.emu.tenantId, oid: fx.operator.principalId, appid: fx.operator.clientId, iat: now, nbf: now, exp: now + 3600 })
      .setProtectedHeader({ alg: 'RS256', kid: (fx.emu.jwks().keys[0] as { kid: string }).kid })
      .sign(privateKey);
    const err = await restError(msiWith(staticCredential(foreign)).userAssignedIdentities.get('rg-neg', 'neg-id'));
    assert.equal(err.statusCode, 401);
    assert.equal(err.code, 'InvalidAuthenticationToken');
    const vault = await fx.emu.issueToken({ resource: 'https://vault.azure.net', principalId: fx.operator.principalId, clientId: fx.operator.clientId });
    const aud = await restError(msiWith(staticCredential(vault.token)).userAssignedIdentities.get('rg-neg', 'neg-id'));
    assert.equal(aud.statusCode, 401);
    assert.equal(aud.code, 'InvalidAuthenticationTokenAudience');
    const none = await rawRequest(`${identityUrl}?${API}`);
    assert.equal(none.status, 401);
    assert.equal((none.json as { error: { code: string } }).error.code, 'AuthenticationFailed');
  });

  it('answers a malformed body, a missing api-version and an unknown path with ARM-shaped errors', async () => {
    const authorization = `Bearer ${await operatorToken(fx)}`;
    const malformed = await rawRequest(`${identityUrl}?${API}`, { method: 'PUT', headers: { authorization }, body: '{"location": "eastus",' });
    assert.equal(malformed.status, 400);
    assert.deepEqual(Object.keys(malformed.json as object), ['error']);
    assert.equal((malformed.json as { error: { code: string; message: string } }).error.code, 'InvalidRequestContent');
    const noVersion = await rawRequest(identityUrl, { headers: { authorization } });
    assert.equal(noVersion.status, 400);
    assert.equal((noVersion.json as { error: { code: string } }).error.code, 'MissingApiVersionParameter');
    assert.equal(typeof (noVersion.json as { error: { message: string } }).error.message, 'string');
    const unknown = await rawRequest(`${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/providers/Microsoft.Nope/things?${API}`, { headers: { authorization } });
    assert.equal(unknown.status, 404);
    assert.ok((unknown.json as { error: { code: string } }).error.code);
    // `//subscriptions/...` is the same path.
    const doubleSlash = await rawRequest(`${fx.emu.armEndpoint}/${identityUrl.slice(fx.emu.armEndpoint.length)}?${API}`, { headers: { authorization } });
    assert.equal(doubleSlash.status, 200);
  });

  it('the SDK’s own retry honours Retry-After from a 429', async () => {
    const msi = msiWith(fx.credential);
    await msi.userAssignedIdentities.get('rg-neg', 'neg-id'); // token acquired, connection warm
    fx.emu.requests.reset();
    fx.emu.faults.set({ match: { route: 'identities.get' }, status: 429, retryAfterSeconds: 1, times: 1 });
    const started = Date.now();
    const got = await msi.userAssignedIdentities.get('rg-neg', 'neg-id');
    const elapsed = Date.now() - started;
    assert.equal(got.name, 'neg-id');
    assert.equal(fx.emu.requests.counts()['GET identities.get'], 2);
    assert.deepEqual(fx.emu.requests.log().map((e) => e.status), [429, 200]);
    assert.ok(elapsed >= 950, `retried after ${elapsed} ms`);
    assert.ok(elapsed < 5000, `retried after ${elapsed} ms`);
  });

  it('injects latency, 500s by rate, and hanging requests; all switchable at runtime', async () => {
    const msi = msiWith(fx.credential);
    const latency = fx.emu.faults.set({ match: { route: 'identities.get' }, latencyMs: 300 });
    let started = Date.now();
    await msi.userAssignedIdentities.get('rg-neg', 'neg-id');
    assert.ok(Date.now() - started >= 290);
    fx.emu.faults.remove(latency);

    fx.emu.faults.set({ match: { method: 'GET', path: /userAssignedIdentities\/neg-id$/ }, status: 500, errorRate: 0 });
    await msi.userAssignedIdentities.get('rg-neg', 'neg-id'); // errorRate 0: never fires
    fx.emu.faults.clear();

    fx.emu.faults.set({ match: { route: 'identities.get' }, hang: true, times: 1 });
    started = Date.now();
    const hung = await restError(msi.userAssignedIdentities.get('rg-neg', 'neg-id', { abortSignal: AbortSignal.timeout(300) }));
    assert.equal(hung.name, 'AbortError');
    assert.ok(Date.now() - started < 2000);
    await msi.userAssignedIdentities.get('rg-neg', 'neg-id'); // the rule expired after once

    fx.emu.faults.set({ match: { route: 'aad.token' }, latencyMs: 200 });
    const res = await rawRequest(`${fx.emu.authorityHost}/${fx.emu.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: fx.operator.clientId, client_secret: fx.operator.clientSecret, scope: 'https://management.azure.com/.default' }).toString(),
    });
    assert.equal(res.status, 200);
    const tokenEntry = fx.emu.requests.log().filter((e) => e.route === 'aad.token').at(-1);
    assert.ok((tokenEntry?.durationMs ?? 0) >= 190);
    fx.emu.faults.clear();
  });
});
