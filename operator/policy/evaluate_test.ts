import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodIdentityPolicy, PodIdentityPolicySpec, PodIdentitySpec } from '../../lib/api/types.js';
import { evaluatePolicy, violations, type PolicyInput } from './evaluate.js';
import { matchesPathPattern } from './patterns.js';

const SUB = '00000000-0000-4000-8000-000000000001';
const RG = (name: string) => `/subscriptions/${SUB}/resourceGroups/${name}`;
const READER_ID = `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7`;
const IDENTITY = (rg: string, name: string) => `${RG(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;

function policy(name: string, spec: PodIdentityPolicySpec): PodIdentityPolicy {
  return { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentityPolicy', metadata: { name }, spec };
}

function input(spec: Partial<PodIdentitySpec>, policies: PodIdentityPolicy[], extra: Partial<PolicyInput> = {}): PolicyInput {
  return {
    namespace: 'team-a',
    namespaceLabels: { tenant: 'a' },
    policies,
    spec: { identity: { managed: {} }, ...spec },
    mode: 'Federated',
    subscriptionId: SUB,
    defaultResourceGroup: 'pods',
    ...extra,
  };
}

const teamA = policy('team-a', {
  namespaceSelector: { matchLabels: { tenant: 'a' } },
  allowedRoles: ['Reader', 'Storage Blob Data Reader'],
  allowedScopes: [RG('team-a-data'), `/subscriptions/${SUB}/resourceGroups/shared-*/**`],
  allowedExistingIdentities: [`${RG('identities')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/team-a-*`],
  allowedModes: ['Federated'],
});
const otherTeam = policy('team-b', { namespaceSelector: { matchLabels: { tenant: 'b' } }, allowedRoles: ['*'], allowedScopes: ['/**'] });

describe('matchesPathPattern', () => {
  const cases: [string, string, boolean][] = [
    [RG('data'), RG('data'), true],
    [RG('data'), `${RG('data')}/providers/Microsoft.Storage/storageAccounts/x`, true],
    [RG('data'), RG('data2'), false], // prefix by segments, not characters
    [RG('DATA'), RG('data'), true], // case-insensitive like ARM
    [RG('data') + '/', RG('data'), false], // a non-canonical pattern (trailing "/") allows nothing
    // Dot segments never match the prefix they start with: ARM would resolve them to somewhere else.
    [RG('team-a'), `${RG('team-a')}/providers/../../..`, false],
    [RG('team-a'), `${RG('team-a')}/providers/../../../resourceGroups/prod`, false],
    [`${RG('team-a')}/**`, `${RG('team-a')}/providers/%2e%2e/%2e%2e/%2e%2e`, false],
    [`/subscriptions/${SUB}/resourceGroups/*/**`, `${RG('x')}/providers/Microsoft.Storage/storageAccounts/..`, false],
    ['/**', `${RG('x')}/./providers/Microsoft.Storage/storageAccounts/a`, false],
    [`${RG('team-a')}/../prod`, RG('prod'), false],
    [`/subscriptions/${SUB}/resourceGroups/team-*`, RG('team-x'), true],
    [`/subscriptions/${SUB}/resourceGroups/team-*`, `${RG('team-x')}/providers/Microsoft.Storage/storageAccounts/c`, false], // * is one segment
    [`/subscriptions/${SUB}/resourceGroups/team-*/**`, `${RG('team-x')}/providers/Microsoft.Storage/storageAccounts/c`, true],
    [`/subscriptions/${SUB}/resourceGroups/team-*/**`, RG('team-x'), true],
    [`/subscriptions/${SUB}/resourceGroups/team-*/**`, RG('other'), false],
    [`/subscriptions/*/resourceGroups/x`, RG('x'), true],
    [`/subscriptions/*`, `${RG('x')}`, false],
    ['/**', RG('anything'), true],
  ];
  for (const [pattern, path, expected] of cases) {
    it(`${pattern} ${expected ? 'matches' : 'does not match'} ${path}`, () => assert.equal(matchesPathPattern(pattern, path), expected));
  }
});

describe('evaluatePolicy', () => {
  it('without a matching policy allows only a managed identity in the default resource group, without roles', () => {
    assert.equal(evaluatePolicy(input({}, [otherTeam])).allowed, true);
    assert.equal(evaluatePolicy(input({ identity: { managed: { resourceGroup: 'pods' } } }, [])).allowed, true);
    const withRole = evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('x') }] }, [otherTeam]));
    assert.equal(withRole.allowed, false);
    assert.deepEqual(violations(withRole), ['roleAssignments[0]: role "Reader" is not allowed in namespace "team-a" by any PodIdentityPolicy']);
    const otherRg = evaluatePolicy(input({}, [], { managedResourceGroup: 'elsewhere' }));
    assert.match(violations(otherRg)[0] ?? '', /^identity\.managed\.resourceGroup: "elsewhere"/);
    const existing = evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('identities', 'team-a-x') } } }, []));
    assert.match(violations(existing)[0] ?? '', /^identity\.existing\.resourceId: /);
  });

  it('names the offending role entry by index', () => {
    const d = evaluatePolicy(
      input({ roleAssignments: [{ role: 'Reader', scope: RG('team-a-data') }, { role: 'Owner', scope: RG('team-a-data') }] }, [teamA], { namespace: 'x' }),
    );
    assert.equal(d.allowed, false);
    assert.deepEqual([...d.roles.keys()], [1]);
    assert.deepEqual(violations(d), ['roleAssignments[1]: role "Owner" is not allowed in namespace "x" by any PodIdentityPolicy']);
    assert.deepEqual(d.policies, ['team-a']);
  });

  it('checks scopes: exact, beneath a prefix, globs, and refuses others', () => {
    const table: [string, boolean][] = [
      [RG('team-a-data'), true],
      [`${RG('team-a-data')}/providers/Microsoft.Storage/storageAccounts/acct`, true],
      [RG('shared-1'), true],
      [`${RG('shared-1')}/providers/Microsoft.KeyVault/vaults/kv`, true],
      [RG('team-a-data2'), false],
      [`/subscriptions/${SUB}`, false],
      [RG('team-b-data'), false],
    ];
    for (const [scope, allowed] of table) {
      const d = evaluatePolicy(input({ roleAssignments: [{ role: 'reader', scope }] }, [teamA]));
      assert.equal(d.allowed, allowed, scope);
      if (!allowed) assert.equal(violations(d)[0], `roleAssignments[0]: scope "${scope}" is not allowed for role "reader" in namespace "team-a" by any PodIdentityPolicy`);
    }
  });

  it('matches role names and roleDefinitionIds either way when the role is resolved', () => {
    const byId = policy('ids', { allowedRoles: [READER_ID], allowedScopes: ['/**'] });
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: READER_ID.toUpperCase().replace('/SUBSCRIPTIONS', '/subscriptions'), scope: RG('x') }] }, [byId])).allowed, true);
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('x') }] }, [byId])).allowed, false);
    const info = new Map([['Reader', { name: 'Reader', guid: 'acdd72a7-3385-48ef-bd42-f606fba81ae7' }]]);
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('x') }] }, [byId], { roleInfo: info })).allowed, true);
    const idInfo = new Map([[READER_ID, { name: 'Reader', guid: 'acdd72a7-3385-48ef-bd42-f606fba81ae7' }]]);
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: READER_ID, scope: RG('team-a-data') }] }, [teamA], { roleInfo: idInfo })).allowed, true);
  });

  it('takes the union of policies, but never combines one policy\'s roles with another\'s scopes', () => {
    const roles = policy('roles', { allowedRoles: ['Owner'], allowedScopes: [RG('sandbox')] });
    const scopes = policy('scopes', { allowedRoles: ['Reader'], allowedScopes: [`/subscriptions/${SUB}`] });
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Owner', scope: RG('sandbox') }] }, [roles, scopes])).allowed, true);
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('prod') }] }, [roles, scopes])).allowed, true);
    const mixed = evaluatePolicy(input({ roleAssignments: [{ role: 'Owner', scope: RG('prod') }] }, [roles, scopes]));
    assert.equal(mixed.allowed, false);
    assert.match(violations(mixed)[0] ?? '', /scope ".*prod" is not allowed for role "Owner"/);
  });

  it('"*" allows any role; an empty namespaceSelector selects every known namespace', () => {
    const any = policy('any', { allowedRoles: ['*'], allowedScopes: [RG('x')] });
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Owner', scope: RG('x') }] }, [any], { namespaceLabels: {} })).allowed, true);
  });

  it('unknown namespaces match no policy: a namespace whose labels are not known yet is denied until they are', () => {
    const any = policy('any', { allowedRoles: ['*'], allowedScopes: [RG('x')] });
    for (const spec of [{ roleAssignments: [{ role: 'Owner', scope: RG('x') }] }, {}]) {
      const d = evaluatePolicy(input(spec, [any, teamA], { namespaceLabels: undefined }));
      assert.equal(d.allowed, false);
      assert.match(d.namespaceUnknown ?? '', /namespace "team-a" is not known/);
      assert.deepEqual(d.policies, [], 'no policy matched');
    }
  });

  it('checks modes; omitted allowedModes allows both', () => {
    assert.equal(evaluatePolicy(input({}, [teamA], { mode: 'Federated' })).allowed, true);
    const denied = evaluatePolicy(input({}, [teamA], { mode: 'Node' }));
    assert.deepEqual(violations(denied), ['mode: "Node" is not allowed in namespace "team-a" by any PodIdentityPolicy']);
    assert.equal(evaluatePolicy(input({}, [teamA, policy('modes', { allowedModes: ['Node'] })], { mode: 'Node' })).allowed, true);
    assert.equal(evaluatePolicy(input({}, [policy('nomodes', {})], { mode: 'Node' })).allowed, true);
  });

  it('allows adopting listed existing identities only', () => {
    assert.equal(evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('identities', 'team-a-api') } } }, [teamA])).allowed, true);
    assert.equal(evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('IDENTITIES', 'TEAM-A-API') } } }, [teamA])).allowed, true);
    const d = evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('identities', 'team-b-api') } } }, [teamA]));
    assert.equal(d.allowed, false);
    assert.match(violations(d)[0] ?? '', /team-b-api" is not allowed in namespace "team-a"/);
  });

  it('allows a managed identity outside the default resource group only within allowedScopes', () => {
    assert.equal(evaluatePolicy(input({}, [teamA], { managedResourceGroup: 'shared-ids' })).allowed, true);
    assert.equal(evaluatePolicy(input({}, [teamA], { managedResourceGroup: 'PODS' })).allowed, true);
    assert.equal(evaluatePolicy(input({}, [teamA], { managedResourceGroup: 'prod' })).allowed, false);
  });

  it('reports every violation, not just the first', () => {
    const d = evaluatePolicy(
      input({ roleAssignments: [{ role: 'Owner', scope: RG('x') }, { role: 'Reader', scope: RG('y') }], identity: { existing: { resourceId: IDENTITY('z', 'zz') } } }, [teamA], { mode: 'Node' }),
    );
    assert.equal(violations(d).length, 4);
    assert.deepEqual([...d.roles.keys()], [0, 1]);
    assert.ok(d.mode && d.identity, 'mode and identity denials are fields of their own');
  });

  it('rejects a role-assignment scope that escapes an allowed prefix through dot segments, as InvalidSpec naming the field', () => {
    const policyA = policy('team-a', { namespaceSelector: {}, allowedRoles: ['Reader'], allowedScopes: [RG('team-a')] });
    for (const scope of [`${RG('team-a')}/providers/../../..`, `${RG('team-a')}/providers/../../../resourceGroups/prod`]) {
      const d = evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope }] }, [policyA]));
      assert.equal(d.allowed, false, scope);
      assert.equal(d.reason, 'InvalidSpec');
      assert.deepEqual([...d.roles.keys()], [0]);
      assert.equal(violations(d).length, 1);
      assert.match(violations(d)[0] ?? '', /^roleAssignments\[0\]\.scope: ".*" is not a canonical ARM scope: it has a "\.\." path segment$/);
    }
  });

  it('a policy entry that is not canonical allows nothing, and the denial says so', () => {
    const sloppy = policy('sloppy', { namespaceSelector: {}, allowedRoles: ['Reader'], allowedScopes: [`${RG('team-a')}/../prod`] });
    const d = evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('prod') }] }, [sloppy]));
    assert.equal(d.allowed, false);
    assert.equal(d.reason, 'PolicyDenied');
    assert.match(violations(d)[0] ?? '', /ignored: PodIdentityPolicy "sloppy" allowedScopes\[0\] .* has a "\.\." path segment; it allows nothing/);
  });

  it('compares canonical ids case-insensitively, like ARM', () => {
    const policyA = policy('team-a', { namespaceSelector: {}, allowedRoles: ['reader'], allowedScopes: [RG('Team-A')] });
    const scope = `/SUBSCRIPTIONS/${SUB.toUpperCase()}/resourcegroups/team-a/providers/microsoft.storage/storageaccounts/x`;
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope }] }, [policyA])).allowed, true);
  });
});

describe('policy escape: combining one policy\'s mode with another\'s roles or identities', () => {
  // The admin allows Owner only in Federated mode (kept off the nodes' scale sets), and Node mode only for Reader.
  const federatedOwner = policy('owner-federated-only', { allowedModes: ['Federated'], allowedRoles: ['Owner'], allowedScopes: [RG('team-a')], allowedExistingIdentities: [IDENTITY('ids', 'deployer')] });
  const nodeReader = policy('node-reader', { allowedModes: ['Node'], allowedRoles: ['Reader'], allowedScopes: [RG('team-a')] });

  it('a role allowed only by a policy that does not allow the mode is denied (Owner in Node mode)', () => {
    const d = evaluatePolicy(input({ roleAssignments: [{ role: 'Owner', scope: RG('team-a') }] }, [federatedOwner, nodeReader], { mode: 'Node' }));
    assert.equal(d.allowed, false);
    assert.match(d.roles.get(0) ?? '', /role "Owner" is not allowed/);
  });

  it('an existing identity allowed only by a policy that does not allow the mode is denied', () => {
    const d = evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('ids', 'deployer') } } }, [federatedOwner, nodeReader], { mode: 'Node' }));
    assert.equal(d.allowed, false);
    assert.match(d.identity ?? '', /is not allowed/);
  });

  it('each policy still allows its own mode with its own entries', () => {
    assert.equal(evaluatePolicy(input({ roleAssignments: [{ role: 'Reader', scope: RG('team-a') }] }, [federatedOwner, nodeReader], { mode: 'Node' })).allowed, true);
    assert.equal(evaluatePolicy(input({ identity: { existing: { resourceId: IDENTITY('ids', 'deployer') } }, roleAssignments: [{ role: 'Owner', scope: RG('team-a') }] }, [federatedOwner, nodeReader])).allowed, true);
  });
});
