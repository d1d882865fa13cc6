import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArmId, parseIdentityResourceId, parsePathPattern, parseRole, parseScope } from './arm-id.js';
import { parseIdentityId, parseResourceId } from './ids.js';

const SUB = '00000000-0000-4000-8000-000000000001';
const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;

describe('canonical ARM ids', () => {
  const accepted: [string, string][] = [
    [`/subscriptions/${SUB}`, 'subscription'],
    [RG('team-a'), 'resourceGroup'],
    [RG('rg_(1).x'), 'resourceGroup'],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/sa`, 'resource'],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default/containers/c`, 'resource'],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/sa/providers/Microsoft.Insights/diagnosticSettings/d`, 'resource'],
    [`/SUBSCRIPTIONS/${SUB.toUpperCase()}/RESOURCEGROUPS/A`, 'resourceGroup'],
    ['/providers/Microsoft.Management/managementGroups/mg-1', 'managementGroup'],
  ];
  for (const [id, kind] of accepted) {
    it(`accepts ${id}`, () => {
      const p = parseScope(id);
      assert.ok(p.ok, p.ok ? '' : p.problem);
      assert.equal(p.value.kind, kind);
      assert.equal(p.value.id, id, 'kept exactly as given');
      assert.equal(p.value.key, id.toLowerCase());
    });
  }

  it('names the parts of a nested resource', () => {
    const p = parseArmId(`${RG('a')}/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default`);
    assert.ok(p.ok);
    assert.deepEqual([p.value.subscriptionId, p.value.resourceGroup, p.value.provider, p.value.type, p.value.name], [SUB, 'a', 'Microsoft.Storage', 'storageAccounts/blobServices', 'default']);
  });

  const rejected: [string, RegExp][] = [
    [`${RG('team-a')}/providers/../../..`, /"\.\." path segment/],
    [`${RG('team-a')}/providers/../../../resourceGroups/prod`, /"\.\." path segment/],
    [`${RG('team-a')}/./providers/Microsoft.Storage/storageAccounts/x`, /"\." path segment/],
    [RG('..'), /"\.\." path segment/],
    [RG('a.'), /invalid resource group name/],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/%2e%2e`, /percent-escape/],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/.\t.`, /whitespace or a control character/],
    [`${RG('a')} `, /whitespace/],
    [`${RG('a')}\u200b`, /control character/],
    [`${RG('a')}\\..`, /backslash/],
    [`${RG('a')}?x=1`, /"\?" or "#"/],
    [`${RG('a')}/`, /empty path segment/],
    [`/subscriptions/${SUB}//resourceGroups/a`, /empty path segment/],
    [`subscriptions/${SUB}`, /does not start with "\/"/],
    ['/subscriptions/not-a-guid', /not a GUID/],
    [`${RG('a')}/providers/Microsoft.Storage`, /without a resource type and name/],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts`, /without a resource type and name/],
    [`${RG('a')}/providers/storage/storageAccounts/x`, /invalid provider namespace "storage"/],
    [`${RG('a')}/providers/Microsoft..Storage/storageAccounts/x`, /invalid provider namespace/],
    [`${RG('a')}/providers/Microsoft.Storage/storage.Accounts/x`, /invalid resource type/],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/x/blobServices`, /without a name/],
    [`${RG('a')}/providers/Microsoft.Storage/storageAccounts/x*`, /invalid resource name/],
    [`/subscriptions/${SUB}/providers/Microsoft.Security/pricings/x`, /subscription-level resource/],
    [`/subscriptions/${SUB}/things/x`, /where "resourceGroups" or "providers" belongs/],
    ['/providers/Microsoft.Management/managementGroups/..', /"\.\." path segment/],
    ['/', /empty path segment/],
    ['', /is empty/],
  ];
  for (const [id, problem] of rejected) {
    it(`rejects ${JSON.stringify(id)}`, () => {
      const p = parseScope(id);
      assert.equal(p.ok, false);
      if (!p.ok) assert.match(p.problem, problem);
    });
  }
});

describe('roles', () => {
  const READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7';
  it('accepts names, GUIDs and roleDefinitionIds', () => {
    assert.deepEqual(parseRole('Storage Blob Data Reader'), { ok: true, value: { role: 'Storage Blob Data Reader', kind: 'name' } });
    for (const r of [READER, `/providers/Microsoft.Authorization/roleDefinitions/${READER}`, `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/${READER.toUpperCase()}`]) {
      const p = parseRole(r);
      assert.ok(p.ok, r);
      assert.equal(p.value.guid, READER);
    }
  });
  it('rejects roleDefinitionIds that are not canonical, and names with control characters', () => {
    for (const r of [
      `/subscriptions/${SUB}/resourceGroups/x/../../providers/Microsoft.Authorization/roleDefinitions/${READER}`,
      `${RG('x')}/providers/Microsoft.Authorization/roleDefinitions/${READER}`,
      `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/${READER}/`,
      `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/not-a-guid`,
      'Reader\n',
      'Reader ',
      'Storage  Blob',
      '../Reader',
    ]) assert.equal(parseRole(r).ok, false, JSON.stringify(r));
  });
});

describe('policy path patterns', () => {
  it('accepts prefixes and globs, lower-cased', () => {
    assert.deepEqual(parsePathPattern(`/subscriptions/${SUB}/resourceGroups/Team-*/**`), { ok: true, value: `/subscriptions/${SUB}/resourcegroups/team-*/**` });
    assert.ok(parsePathPattern('/**').ok);
  });
  it('rejects dot segments, empty segments, escapes and inner "**"', () => {
    for (const p of [`${RG('a')}/..`, `${RG('a')}/.`, `${RG('a')}/`, `${RG('a')}//x`, `${RG('a')}/%2e%2e`, `${RG('a')}/**/x`, `${RG('a')}/a**`, ` ${RG('a')}`]) {
      assert.equal(parsePathPattern(p).ok, false, p);
    }
  });
});

describe('identity ids that extend another id (attack: an allowed identity id as a prefix of another identity)', () => {
  const app = `${RG('team-a')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app`;
  const extended: [string, string][] = [
    ['an extension section on the allowed identity', `${app}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`],
    ['an extension section on another resource', `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/x/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`],
    ['nested "resourceGroups" after a provider section', `${RG('team-a')}/providers/Microsoft.Foo/bar/x/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/admin`],
  ];
  for (const [how, id] of extended) {
    it(`rejects ${how} as a user-assigned identity id, and the adapters cannot parse it into another identity`, () => {
      const p = parseIdentityResourceId(id);
      assert.equal(p.ok, false, 'not an identity id');
      if (!p.ok) assert.match(p.problem, /is not a user-assigned identity id/);
      assert.equal(parseIdentityId(id), undefined, 'adapters refuse it');
      assert.equal(parseResourceId(id), undefined, 'not a top-level resource');
    });
  }
  it('still accepts the identity id itself', () => {
    assert.ok(parseIdentityResourceId(app).ok);
    assert.equal(parseIdentityId(app)?.name, 'app');
  });
});
