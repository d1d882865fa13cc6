import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesSelector } from './selector.js';
import { effectiveSelector } from './types.js';

test('matchLabels requires every label to be equal', () => {
  assert.equal(matchesSelector({ matchLabels: { a: '1', b: '2' } }, { a: '1', b: '2', c: '3' }), true);
  assert.equal(matchesSelector({ matchLabels: { a: '1', b: '2' } }, { a: '1' }), false);
  assert.equal(matchesSelector({ matchLabels: { a: '1' } }, undefined), false);
});

test('expressions follow Kubernetes semantics', () => {
  const labels = { tier: 'web', env: 'prod' };
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'api'] }] }, labels), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['api'] }] }, labels), false);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] }, labels), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'missing', operator: 'NotIn', values: ['x'] }] }, labels), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'Exists' }] }, labels), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'DoesNotExist' }] }, labels), false);
});

test('an empty selector matches everything', () => {
  assert.equal(matchesSelector({}, {}), true);
});

test('an unknown operator matches nothing', () => {
  const bogus = { matchExpressions: [{ key: 'a', operator: 'Bogus' as 'In' }] };
  assert.equal(matchesSelector(bogus, { a: '1' }), false);
});

test('the default selector is the podidentity.dev/identity label', () => {
  const sel = effectiveSelector({ metadata: { name: 'web' }, spec: { identity: { managed: {} } } });
  assert.deepEqual(sel, { matchLabels: { 'podidentity.dev/identity': 'web' } });
});
