import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { roleAssignmentName } from '../azure/ids.js';
import { defaultIdentityName, legacyIdentityName, federatedCredentialName, serviceAccountSubject } from './names.js';

const AZURE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$/;

describe('deterministic names', () => {
  it('identity names are <namespace>_<name> when that is already valid', () => {
    assert.equal(defaultIdentityName('team-a', 'web'), 'team-a_web');
  });

  it('ambiguous default identity names: namespace a name b-web and namespace a-b name web get different names', () => {
    assert.notEqual(defaultIdentityName('a', 'b-web'), defaultIdentityName('a-b', 'web'));
    assert.notEqual(defaultIdentityName('a', 'b.web'), defaultIdentityName('a', 'b-web'));
    assert.notEqual(defaultIdentityName('a.b', 'web'), defaultIdentityName('a', 'b_web'));
    for (const [ns, n] of [['a', 'b-web'], ['a-b', 'web'], ['a', 'b.web'], ['a', 'b']]) assert.match(defaultIdentityName(ns!, n!), AZURE_NAME);
  });

  it('keeps long names within Azure limits, distinct and stable', () => {
    const dotted = defaultIdentityName('team-a', 'web.v2');
    assert.equal(dotted, 'team-a_web_v2');
    const long = defaultIdentityName('n'.repeat(63), 'x'.repeat(253));
    assert.match(long, AZURE_NAME);
    assert.equal(long.length, 128);
    assert.notEqual(long, defaultIdentityName('n'.repeat(63), 'x'.repeat(252) + 'y'));
    assert.equal(long, defaultIdentityName('n'.repeat(63), 'x'.repeat(253)));
  });

  it('legacy names stay what they were, for adopting identities created before', () => {
    assert.equal(legacyIdentityName('team-a', 'web'), 'team-a-web');
    assert.match(legacyIdentityName('team-a', 'web.v2'), /^team-a-web-v2-[0-9a-f]{8}$/);
  });

  it('federated credential names are valid, stable and distinct per subject', () => {
    const a = federatedCredentialName(serviceAccountSubject('ns', 'web'));
    assert.match(a, /^pid-web-[0-9a-f]{10}$/);
    assert.equal(a, federatedCredentialName('system:serviceaccount:ns:web'));
    assert.notEqual(a, federatedCredentialName(serviceAccountSubject('other', 'web')));
    const long = federatedCredentialName(serviceAccountSubject('ns', 'a.b'.repeat(80)));
    assert.ok(long.length <= 120 && /^[A-Za-z0-9][A-Za-z0-9_-]+$/.test(long), long);
  });

  it('role assignment names are v5 UUIDs of principal + role + scope, insensitive to case and id form', () => {
    const p = '11111111-2222-4333-8444-555555555555';
    const scope = '/subscriptions/s/resourceGroups/rg';
    const reader = '/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7';
    const name = roleAssignmentName(p, reader, scope);
    assert.match(name, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(name, roleAssignmentName(p.toUpperCase(), 'acdd72a7-3385-48ef-bd42-f606fba81ae7', scope.toUpperCase() + '/'));
    assert.notEqual(name, roleAssignmentName(p, reader, scope + '2'));
    assert.notEqual(name, roleAssignmentName(p, reader.replace('acdd72a7', 'bcdd72a7'), scope));
  });
});
