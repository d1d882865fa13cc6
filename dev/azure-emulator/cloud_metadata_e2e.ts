/**
 * Contract: ARM's cloud metadata (`/metadata/endpoints?api-version=…`) in each of its real shapes, and a
 * custom-cloud client that knows nothing but the ARM endpoint: it registers the cloud from the metadata (as
 * `az cloud register --endpoint-resource-manager` and Azure Stack Hub setups do), then signs in with
 * @azure/identity at the login endpoint and audience it learned, and calls ARM through @azure/arm-msi.
 * No package in node_modules registers clouds from metadata, so the registration step is written out here.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { ClientSecretCredential } from '@azure/identity';
import { EMULATOR_CLOUD_NAME, METADATA_API_VERSIONS } from './arm/metadata.js';
import { rawRequest, startFixture, type Fixture } from './test-fixture.js';

interface CloudEntry {
  name: string;
  resourceManager: string;
  portal: string;
  gallery: string;
  authentication: { loginEndpoint: string; audiences: string[]; tenant: string; identityProvider: string };
  suffixes: Record<string, string>;
  [field: string]: unknown;
}

/** What a custom-cloud registration keeps: the endpoints to sign in at and to call. */
interface RegisteredCloud {
  name: string;
  activeDirectory: string;
  activeDirectoryResourceId: string;
  resourceManager: string;
}

/** Registers a cloud from its ARM endpoint alone, the way the CLI's `--endpoint-resource-manager` does. */
async function registerCloud(armEndpoint: string): Promise<RegisteredCloud> {
  const res = await fetch(new URL('/metadata/endpoints?api-version=2022-09-01', armEndpoint));
  assert.equal(res.status, 200);
  const entry = (await res.json()) as CloudEntry;
  const audience = entry.authentication.audiences[0];
  assert.ok(audience, 'the metadata names at least one audience');
  return { name: entry.name, activeDirectory: entry.authentication.loginEndpoint.replace(/\/+$/, ''), activeDirectoryResourceId: audience, resourceManager: entry.resourceManager };
}

describe('ARM cloud metadata', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture();
  });
  after(() => fx.emu.stop());

  const url = (version?: string) => `${fx.emu.armEndpoint}/metadata/endpoints${version ? `?api-version=${version}` : ''}`;
  const base = () => `${fx.emu.armEndpoint}/`;

  it('needs no bearer token, like real ARM, and names the emulator\'s own endpoints', async () => {
    const res = await rawRequest(url('2022-09-01'), { ca: fx.emu.caPem });
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /application\/json/);
    const entry = res.json as CloudEntry;
    assert.equal(entry.name, EMULATOR_CLOUD_NAME);
    assert.equal(entry.resourceManager, base());
    assert.equal(entry.authentication.loginEndpoint, base());
    assert.equal(entry.authentication.identityProvider, 'AAD');
    assert.ok(entry.authentication.audiences.includes('https://management.core.windows.net/'));
    for (const field of ['portal', 'gallery', 'graph', 'graphAudience', 'batch', 'sqlManagement', 'media', 'activeDirectoryDataLake', 'vmImageAliasDoc']) {
      assert.ok(String(entry[field]).startsWith(base()), `${field} (${String(entry[field])}) points at the emulator`);
    }
    for (const [name, suffix] of Object.entries(entry.suffixes)) assert.match(suffix, /\.invalid$/, `suffix ${name} leads nowhere real`);
    assert.equal(fx.emu.requests.count('metadata.endpoints'), 1);
  });

  it('answers each api-version in its real shape: legacy object, list of clouds, single cloud', async () => {
    const legacy = (await rawRequest(url('1.0'), { ca: fx.emu.caPem })).json as Record<string, unknown>;
    assert.deepEqual(Object.keys(legacy).sort(), ['authentication', 'galleryEndpoint', 'graphEndpoint', 'portalEndpoint']);
    assert.equal((legacy.authentication as { loginEndpoint: string }).loginEndpoint, base());

    const list = (await rawRequest(url('2019-05-01'), { ca: fx.emu.caPem })).json as CloudEntry[];
    assert.ok(Array.isArray(list) && list.length === 1);
    assert.equal(list[0]?.resourceManager, base());

    const single = (await rawRequest(url('2022-09-01'), { ca: fx.emu.caPem })).json as CloudEntry;
    assert.deepEqual(single, list[0], 'the single-cloud shape is the list entry');
    assert.ok(METADATA_API_VERSIONS.includes('2023-11-01'));
  });

  it('refuses a missing or unknown api-version with ARM\'s error shape', async () => {
    const missing = await rawRequest(url(), { ca: fx.emu.caPem });
    assert.equal(missing.status, 400);
    assert.equal((missing.json as { error: { code: string } }).error.code, 'MissingApiVersionParameter');
    const unknown = await rawRequest(url('2001-01-01'), { ca: fx.emu.caPem });
    assert.equal(unknown.status, 400);
    assert.equal((unknown.json as { error: { code: string } }).error.code, 'InvalidApiVersionParameter');
  });

  it('a client that registers the cloud from the ARM endpoint alone signs in and calls ARM', async () => {
    const cloud = await registerCloud(fx.emu.armEndpoint);
    assert.equal(cloud.name, EMULATOR_CLOUD_NAME);
    const credential = new ClientSecretCredential(fx.emu.tenantId, fx.operator.clientId, fx.operator.clientSecret, {
      authorityHost: cloud.activeDirectory,
      disableInstanceDiscovery: true,
    });
    const msi = new ManagedServiceIdentityClient(credential, fx.emu.subscriptionId, {
      endpoint: cloud.resourceManager,
      credentialScopes: [`${cloud.activeDirectoryResourceId}.default`],
    });
    const group = `rg-cloud-${randomUUID().slice(0, 8)}`;
    fx.emu.seed.resourceGroup(group, 'westeurope');
    const created = await msi.userAssignedIdentities.createOrUpdate(group, 'custom-cloud', { location: 'westeurope' });
    assert.equal(created.name, 'custom-cloud');
    assert.equal((await msi.userAssignedIdentities.get(group, 'custom-cloud')).principalId, created.principalId);
  });
});
