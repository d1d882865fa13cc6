import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setCondition } from './conditions.js';

const t0 = new Date('2024-01-01T00:00:00.123Z');
const t1 = new Date('2024-01-01T00:05:00Z');

test('a new condition gets the current time (RFC 3339, seconds) and observedGeneration', () => {
  const out = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting' }, 3, t0);
  assert.deepEqual(out, [{ type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting', lastTransitionTime: '2024-01-01T00:00:00Z', observedGeneration: 3 }]);
});

test('lastTransitionTime changes only when the status flips', () => {
  const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'm1' }, 1, t0);
  const same = setCondition(a, { type: 'Ready', status: 'False', reason: 'StillPending', message: 'm2' }, 2, t1);
  assert.equal(same[0]!.lastTransitionTime, '2024-01-01T00:00:00Z');
  assert.equal(same[0]!.reason, 'StillPending');
  assert.equal(same[0]!.observedGeneration, 2);
  const flipped = setCondition(same, { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' }, 2, t1);
  assert.equal(flipped[0]!.lastTransitionTime, '2024-01-01T00:05:00Z');
  assert.equal(a[0]!.reason, 'Pending', 'input not mutated');
});

test('other conditions are kept in order', () => {
  let c = setCondition([], { type: 'A', status: 'True', reason: 'r', message: '' }, 1, t0);
  c = setCondition(c, { type: 'B', status: 'True', reason: 'r', message: '' }, 1, t0);
  c = setCondition(c, { type: 'A', status: 'False', reason: 'r', message: '' }, 1, t1);
  assert.deepEqual(c.map((x) => x.type), ['A', 'B']);
});
