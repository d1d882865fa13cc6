/**
 * Contract: IMDS as real clients see it. @azure/identity's ManagedIdentityCredential runs in a child process
 * ("a pod"), pointed at the emulator with AZURE_POD_IDENTITY_AUTHORITY_HOST, and connects from its node's own
 * loopback address (127.0.0.x), which is how the emulator tells callers apart.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../support/processes.js';
import { claimsOf, rawRequest, startFixture, type Fixture } from './test-fixture.js';

interface MiResult {
  ok: boolean;
  token?: string;
  expiresOnTimestamp?: number;
  message?: string;
}

const NODE_A = '127.0.0.11';
const NODE_B = '127.0.0.12';
const STRANGER = '127.0.0.13';
const ARM_RESOURCE = 'https://management.azure.com/';

describe('IMDS', () => {
  let fx: Fixture;
  let a1: { id: string; clientId: string; principalId: string };
  let a2: { id: string; clientId: string; principalId: string };
  let b1: { id: string; clientId: string; principalId: string };

  before(async () => {
    fx = await startFixture();
    const seed = fx.emu.seed;
    seed.scaleSet({ resourceGroup: 'mc_rg', name: 'pool-a', instances: [{ nodeName: 'node-a', ip: NODE_A }] });
    seed.scaleSet({ resourceGroup: 'mc_rg', name: 'pool-b', instances: [{ nodeName: 'node-b', ip: NODE_B }] });
    a1 = seed.identity({ resourceGroup: 'rg-ids', name: 'a1' });
    a2 = seed.identity({ resourceGroup: 'rg-ids', name: 'a2' });
    b1 = seed.identity({ resourceGroup: 'rg-ids', name: 'b1' });
    // Assign through ARM, as the operator will.
    const token = (await fx.credential.getToken('https://management.azure.com/.default')).token;
    const patch = async (vmss: string, ids: string[]) => {
      const res = await rawRequest(`${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/${vmss}?api-version=2026-04-01`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ identity: { type: 'UserAssigned', userAssignedIdentities: Object.fromEntries(ids.map((id) => [id, {}])) } }),
      });
      assert.equal(res.status, 200, res.text);
    };
    await patch('pool-a', [a1.id, a2.id]);
    await patch('pool-b', [b1.id]);
  });
  after(async () => {
    await fx.emu.stop();
  });

  /** Runs ManagedIdentityCredential in a child process ("a pod on that node"): see testdata/managed-identity-client.ts. */
  async function podGetToken(from: string, clientId: string, scope = 'https://management.azure.com/.default'): Promise<MiResult> {
    const child = startProcess('mi-client', process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./testdata/managed-identity-client.ts', import.meta.url))], {
      env: { ...process.env, AZURE_POD_IDENTITY_AUTHORITY_HOST: fx.emu.imdsEndpoint, LOCAL_ADDRESS: from, CLIENT_ID: clientId, SCOPE: scope },
    });
    const code = await child.exited;
    const line = child.output().trim().split('\n').filter((l) => l.startsWith('{')).pop();
    assert.ok(line, `mi-client exited ${code} without a result: ${child.output()}`);
    return JSON.parse(line) as MiResult;
  }

  it('ManagedIdentityCredential gets a token for an identity assigned to the caller’s scale set', async () => {
    const result = await podGetToken(NODE_A, a1.clientId);
    assert.ok(result.ok, result.message);
    const claims = claimsOf(result.token ?? '');
    assert.equal(claims['oid'], a1.principalId);
    assert.equal(claims['appid'], a1.clientId);
    assert.equal(claims['xms_mirid'], a1.id);
    assert.equal(claims['aud'], 'https://management.azure.com'); // the credential strips '/.default'
    assert.ok((result.expiresOnTimestamp ?? 0) > Date.now() + 3000_000);
    const imds = fx.emu.requests.log().filter((e) => e.route === 'imds.token');
    assert.equal(imds.at(-1)?.status, 200);
    // msal-node lowercases the path and adds a trailing slash (reference §5).
    assert.equal(imds.at(-1)?.path, '/metadata/identity/oauth2/token/');
  });

  it('ManagedIdentityCredential is refused for an identity not on the caller’s scale set, and for an unknown caller', async () => {
    const [wrongNode, stranger, right] = await Promise.all([podGetToken(NODE_A, b1.clientId), podGetToken(STRANGER, a1.clientId), podGetToken(NODE_B, b1.clientId, 'https://vault.azure.net/.default')]);
    assert.equal(wrongNode.ok, false);
    assert.match(wrongNode.message ?? '', /Identity not found/);
    assert.equal(stranger.ok, false);
    assert.match(stranger.message ?? '', /Identity not found/);
    assert.ok(right.ok, right.message);
    assert.equal(claimsOf(right.token ?? '')['oid'], b1.principalId);
  });

  const imdsGet = (query: Record<string, string>, opts: { from?: string; headers?: Record<string, string>; path?: string } = {}) =>
    rawRequest(`${fx.emu.imdsEndpoint}${opts.path ?? '/metadata/identity/oauth2/token'}?${new URLSearchParams(query).toString()}`, {
      localAddress: opts.from ?? NODE_A,
      headers: opts.headers ?? { Metadata: 'true' },
    });

  it('speaks the exact IMDS protocol: strings everywhere, JSON errors, hints', async () => {
    const ok = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: a2.clientId }, { path: '/METADATA/identity/oauth2/token/' });
    assert.equal(ok.status, 200, ok.text);
    const body = ok.json as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'client_id', 'expires_in', 'expires_on', 'ext_expires_in', 'not_before', 'refresh_token', 'resource', 'token_type']);
    for (const [k, v] of Object.entries(body)) assert.equal(typeof v, 'string', k);
    assert.equal(body['refresh_token'], '');
    assert.equal(body['token_type'], 'Bearer');
    assert.equal(body['resource'], ARM_RESOURCE);
    assert.equal(body['client_id'], a2.clientId);
    assert.match(String(body['expires_on']), /^\d+$/);

    const byObject = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, object_id: a1.principalId });
    assert.equal((byObject.json as Record<string, string>)['object_id'], a1.principalId);
    assert.equal((byObject.json as Record<string, string>)['client_id'], a1.clientId);
    const byRes = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, mi_res_id: a2.id });
    assert.equal((byRes.json as Record<string, string>)['client_id'], a2.clientId);
    assert.equal((byRes.json as Record<string, string>)['msi_res_id'], a2.id);

    const noHeader = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE }, { headers: {} });
    assert.equal(noHeader.status, 400);
    assert.deepEqual(noHeader.json, { error: 'invalid_request', error_description: 'Required metadata header not specified' });
    const multiple = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE });
    assert.equal(multiple.status, 400);
    assert.equal(
      (multiple.json as Record<string, string>)['error_description'],
      'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request',
    );
    const single = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE }, { from: NODE_B });
    assert.equal((single.json as Record<string, string>)['client_id'], b1.clientId);
    const notFound = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: b1.clientId });
    assert.deepEqual(notFound.json, { error: 'invalid_request', error_description: 'Identity not found' });
    assert.equal((await imdsGet({ resource: ARM_RESOURCE })).status, 400);
    assert.equal((await imdsGet({ 'api-version': '2018-02-01' })).status, 400);
    assert.equal((await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: a1.clientId, object_id: a1.principalId })).status, 400);
    const forwarded = await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: a1.clientId }, { headers: { Metadata: 'true', 'X-Forwarded-For': '10.0.0.1' } });
    assert.equal(forwarded.status, 400);
  });

  /** A request with the path sent byte for byte (no client-side URL normalisation). */
  const rawPathGet = (path: string, opts: { from?: string; method?: string } = {}) =>
    new Promise<{ status: number; json: Record<string, string>; allow?: string }>((resolve, reject) => {
      const url = new URL(fx.emu.imdsEndpoint);
      const req = httpRequest({ host: url.hostname, port: url.port, path, method: opts.method ?? 'GET', localAddress: opts.from ?? NODE_B, headers: { Metadata: 'true' } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: (text ? JSON.parse(text) : {}) as Record<string, string>, allow: res.headers['allow'] }));
      });
      req.on('error', reject);
      req.end();
    });

  it('decodes paths as IMDS does: every disguised spelling of the token path is a token request (what the agent must never forward)', async () => {
    const query = `?api-version=2018-02-01&resource=${encodeURIComponent(ARM_RESOURCE)}`;
    for (const path of [
      '/metadata/%69dentity/oauth2/token',
      '/metadata/IDENTIT%59/oauth2/token',
      '/metadata/identity%2Foauth2%2Ftoken',
      '/metadata//identity/oauth2/token',
      '/metadata/./identity/oauth2/token',
      '/metadata/instance%2F..%2Fidentity/oauth2/token',
      '/metadata\\identity\\oauth2\\token',
      '/metadata%5Cidentity%5Coauth2%5Ctoken',
      '/metadata/identity./oauth2/token.',
    ]) {
      const res = await rawPathGet(path + query);
      assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.json)}`);
      assert.equal(claimsOf(res.json['access_token']!)['oid'], b1.principalId);
    }
  });

  it('refuses a repeated query parameter with 400 and other methods with 405', async () => {
    const query = `?api-version=2018-02-01&resource=${encodeURIComponent(ARM_RESOURCE)}`;
    const twice = await rawPathGet(`/metadata/identity/oauth2/token${query}&client_id=${b1.clientId}&client_id=${b1.clientId}`);
    assert.deepEqual({ status: twice.status, json: twice.json }, { status: 400, json: { error: 'invalid_request', error_description: "Query parameter 'client_id' is specified more than once" } });
    const post = await rawPathGet(`/metadata/identity/oauth2/token${query}`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.allow, 'GET');
    assert.equal(post.json['error'], 'invalid_request');
  });

  it('serves minimal instance metadata for the caller', async () => {
    const res = await imdsGet({ 'api-version': '2021-02-01' }, { path: '/metadata/instance', from: NODE_B });
    const compute = (res.json as { compute: Record<string, string> }).compute;
    assert.equal(compute['vmScaleSetName'], 'pool-b');
    assert.equal(compute['subscriptionId'], fx.emu.subscriptionId);
    assert.equal(compute['resourceGroupName'], 'mc_rg');
    const name = await imdsGet({ 'api-version': '2021-02-01', format: 'text' }, { path: '/metadata/instance/compute/vmScaleSetName', from: NODE_B });
    assert.equal(name.text, 'pool-b');
    // Trailing dots are trimmed as Windows does: what the agent's proxy must never forward.
    const trimmed = await imdsGet({ 'api-version': '2021-02-01', format: 'text' }, { path: '/metadata/instance/compute./vmScaleSetName.', from: NODE_B });
    assert.equal(trimmed.text, 'pool-b');
  });

  it('an IMDS token works against ARM: list resource groups with a Reader role (the origin story)', async () => {
    fx.emu.seed.roleAssignment({ principalId: a1.principalId, role: 'Reader', scope: `/subscriptions/${fx.emu.subscriptionId}` });
    const token = ((await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: a1.clientId })).json as { access_token: string }).access_token;
    const res = await rawRequest(`${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/resourcegroups?api-version=2021-04-01`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, res.text);
    const names = (res.json as { value: { name: string }[] }).value.map((rg) => rg.name).sort();
    assert.deepEqual(names, ['mc_rg', 'rg-ids']);
    // a2 has no role: it sees nothing, and cannot write.
    const token2 = ((await imdsGet({ 'api-version': '2018-02-01', resource: ARM_RESOURCE, client_id: a2.clientId })).json as { access_token: string }).access_token;
    const none = await rawRequest(`${fx.emu.armEndpoint}/subscriptions/${fx.emu.subscriptionId}/resourcegroups?api-version=2021-04-01`, { headers: { authorization: `Bearer ${token2}` } });
    assert.deepEqual((none.json as { value: unknown[] }).value, []);
  });
});
