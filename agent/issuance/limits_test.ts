import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ImdsError } from '../imds/protocol.js';
import { IssuanceLimits } from './limits.js';

function refusal(fn: () => void): ImdsError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ImdsError) return err;
    throw err;
  }
  assert.fail('expected a refusal');
}

test('Azure AD rate-limit burning: upstream requests per identity are capped per window, with 429 + Retry-After', () => {
  let now = 0;
  const refused: string[] = [];
  const limits = new IssuanceLimits({ maxResources: 3, maxExchanges: 4, windowMs: 60_000, now: () => now, onRefused: (r) => refused.push(r) });
  for (let i = 0; i < 4; i++) limits.admit('Federated|id|ns/sa', 'https://vault.azure.net');
  now = 10_000;
  const err = refusal(() => limits.admit('Federated|id|ns/sa', 'https://vault.azure.net'));
  assert.equal(err.status, 429);
  assert.equal(err.error, 'too_many_requests');
  assert.equal(err.headers['Retry-After'], '50', 'until the oldest request leaves the window');
  assert.deepEqual(refused, ['exchanges_per_identity']);
  // Another principal (another identity, or the same identity for another service account) is not affected.
  limits.admit('Federated|id|ns/other-sa', 'https://vault.azure.net');
  now = 60_001;
  limits.admit('Federated|id|ns/sa', 'https://vault.azure.net');
});

test('cache-busting: distinct resources per identity are capped; resources already in use are not', () => {
  let now = 0;
  const limits = new IssuanceLimits({ maxResources: 2, maxExchanges: 100, windowMs: 1000, now: () => now });
  limits.admit('p', 'a');
  limits.admit('p', 'b');
  assert.match(refusal(() => limits.admit('p', 'c')).description, /2 distinct resources/);
  limits.admit('p', 'a');
  now = 1001;
  limits.admit('p', 'c');
});
