import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boundedRetryAfter, classifyAadFailure, DEFAULT_PROPAGATION_WINDOW_MS, type AadFailure, type CredentialContext } from './aad-failure.js';

const NOW = Date.parse('2026-11-30T12:00:00Z');
const ctx = (credentialWrittenAt: CredentialContext['credentialWrittenAt']): CredentialContext => ({
  clientId: '11111111-1111-4111-8111-111111111111',
  subject: 'system:serviceaccount:team:app',
  credentialWrittenAt,
  now: NOW,
  propagationWindowMs: DEFAULT_PROPAGATION_WINDOW_MS,
});
const refused = (status: number, aadsts: number | undefined, extra: Partial<Extract<AadFailure, { kind: 'refused' }>> = {}): AadFailure => ({
  kind: 'refused',
  status,
  error: status === 429 ? 'temporarily_unavailable' : 'invalid_client',
  ...(aadsts !== undefined ? { aadsts } : {}),
  description: `AADSTS${aadsts ?? 0}: something`,
  ...extra,
});

test('propagation: no matching federated record for a credential written moments ago is 503 + Retry-After, never 500', () => {
  for (const code of [70021, 700211, 700212, 700213, 7002137, 7002138, 700016]) {
    for (const status of [400, 401]) {
      const err = classifyAadFailure(refused(status, code), ctx(NOW - 2_000));
      assert.equal(err.status, 503, `AADSTS${code} (${status})`);
      assert.equal(err.code, 'credential_propagating');
      assert.equal(err.retryAfterSeconds, 2, 'the wait grows with the credential age');
      assert.match(err.message, /system:serviceaccount:team:app/);
      assert.match(err.message, /11111111-1111-4111-8111-111111111111/);
    }
  }
  assert.equal(classifyAadFailure(refused(400, 70021), ctx(NOW - 100)).retryAfterSeconds, 1, 'at least a second');
  assert.equal(classifyAadFailure(refused(400, 70021), ctx(NOW - 9 * 60_000)).retryAfterSeconds, 10, 'at most 10 s');
});

test('a credential the operator has not recorded yet (a new service account) is 503: it is about to be written', () => {
  const err = classifyAadFailure(refused(401, 70021), ctx(undefined));
  assert.equal(err.status, 503);
  assert.equal(err.code, 'credential_pending');
  assert.equal(err.retryAfterSeconds, 1);
});

test('genuinely missing: a credential written longer ago than the window, or before write times were recorded, is a 400 naming it', () => {
  for (const written of [NOW - DEFAULT_PROPAGATION_WINDOW_MS - 1, null]) {
    const err = classifyAadFailure(refused(401, 70021), ctx(written));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'credential_not_accepted');
    assert.equal(err.retryAfterSeconds, undefined);
    assert.match(err.message, /client_id 11111111-1111-4111-8111-111111111111, subject system:serviceaccount:team:app/);
    assert.match(err.message, /AADSTS70021/);
  }
});

test('throttling: 429 with Azure AD’s Retry-After passed on, bounded to 1..60 s; 5 s when it gave none', () => {
  const cases: [string | undefined, number][] = [['7', 7], ['0', 1], ['3600', 60], [undefined, 5], ['soon', 5]];
  for (const [retryAfter, expected] of cases) {
    const err = classifyAadFailure(refused(429, 50196, retryAfter !== undefined ? { retryAfter } : {}), ctx(NOW - 2_000));
    assert.equal(err.status, 429);
    assert.equal(err.code, 'aad_throttled');
    assert.equal(err.retryAfterSeconds, expected, `Retry-After ${retryAfter}`);
  }
  assert.equal(boundedRetryAfter(new Date(NOW + 20_000).toUTCString(), NOW), 20, 'an HTTP date');
});

test('an unavailable Azure AD (5xx, unreachable, timeout, issuer unreachable) is 503 + Retry-After', () => {
  for (const status of [500, 502, 503, 504]) {
    const err = classifyAadFailure(refused(status, 50000, { retryAfter: '12' }), ctx(null));
    assert.equal(err.status, 503, String(status));
    assert.equal(err.code, 'aad_unavailable');
    assert.equal(err.retryAfterSeconds, 12);
  }
  const down = classifyAadFailure({ kind: 'unreachable', description: 'Azure AD did not answer within 5000 ms' }, ctx(null));
  assert.deepEqual([down.status, down.code, down.retryAfterSeconds], [503, 'aad_unavailable', 5]);
  const issuer = classifyAadFailure(refused(401, 50166), ctx(null));
  assert.deepEqual([issuer.status, issuer.retryAfterSeconds], [503, 5]);
});

test('any other refusal (bad signature, expired assertion, unknown tenant) is a 400 that names the client and subject, never a 500', () => {
  for (const code of [700027, 700024, 90002, undefined]) {
    const err = classifyAadFailure(refused(400, code), ctx(NOW - 1000));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'aad_refused');
    assert.match(err.message, /client_id 11111111-1111-4111-8111-111111111111, subject system:serviceaccount:team:app/);
  }
});
