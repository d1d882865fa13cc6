import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from './duration.js';

test('durations: units, combinations, and what is refused', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('15s'), 15_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  for (const bad of ['', '5', 's', '-1s', '1 s', '1d', '1s ms', 'abc']) assert.equal(parseDuration(bad), undefined, bad);
  assert.equal(formatDuration(600_000), '10m');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(250), '250ms');
});
