import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FederatedCredentialStatus } from '../../lib/api/types.js';
import { PROPAGATION_WINDOW_MS, propagationOf, type ExchangeReport } from './propagation.js';

const T0 = Date.parse('2026-11-30T12:00:00Z');
const cred = (subject: string, at?: number): FederatedCredentialStatus => ({ name: subject, issuer: 'https://issuer', subject, ...(at !== undefined ? { lastWriteTime: new Date(at).toISOString() } : {}) });
const report = (subject: string, at: number, uid = 'uid-1', node = 'node-a'): ExchangeReport => ({ uid, subject, at, node });
const A = 'system:serviceaccount:ns:a';
const B = 'system:serviceaccount:ns:b';

test('Propagating from the credential write, saying pods get 503 + Retry-After meanwhile', () => {
  const p = propagationOf('uid-1', [cred(A, T0)], [], T0 + 5_000);
  assert.equal(p.condition?.status, 'False');
  assert.equal(p.condition?.reason, 'Propagating');
  assert.match(p.condition?.message ?? '', /503 and Retry-After/);
  assert.match(p.condition?.message ?? '', new RegExp(A));
  assert.equal(p.first, undefined);
});

test('Propagated once an agent reports an exchange for every credential after its write; first exchange recorded', () => {
  const p = propagationOf('uid-1', [cred(A, T0), cred(B, T0 + 1000)], [report(A, T0 + 3_000), report(B, T0 + 4_000, 'uid-1', 'node-b')], T0 + 5_000);
  assert.equal(p.condition?.status, 'True');
  assert.equal(p.condition?.reason, 'Propagated');
  assert.deepEqual(p.first, { time: '2026-11-30T12:00:03Z', node: 'node-a' });
});

test('reports from before the write, for another subject, or about a previous PodIdentity of the same name do not count', () => {
  const p = propagationOf('uid-1', [cred(A, T0)], [report(A, T0 - 1), report(B, T0 + 1), report(A, T0 + 1, 'uid-old')], T0 + 5_000);
  assert.equal(p.condition?.reason, 'Propagating');
});

test('past the window with no exchange reported: Unknown, NoExchangeYet, naming the credential', () => {
  const p = propagationOf('uid-1', [cred(A, T0)], [], T0 + PROPAGATION_WINDOW_MS + 1);
  assert.deepEqual([p.condition?.status, p.condition?.reason], ['Unknown', 'NoExchangeYet']);
  assert.match(p.condition?.message ?? '', new RegExp(A));
});

test('what status recorded stands after the Events expire, until a credential is written again', () => {
  const recorded = { first: { time: '2026-11-30T12:00:03Z', node: 'node-a' }, propagatedSince: '2026-11-30T12:00:04Z' };
  const kept = propagationOf('uid-1', [cred(A, T0)], [], T0 + 2 * 3_600_000, recorded);
  assert.equal(kept.condition?.reason, 'Propagated');
  assert.deepEqual(kept.first, recorded.first);
  const rewritten = propagationOf('uid-1', [cred(A, T0 + 3_600_000)], [], T0 + 3_600_000 + 1000, recorded);
  assert.equal(rewritten.condition?.reason, 'Propagating');
  assert.equal(rewritten.first, undefined);
});

test('credentials written before write times were recorded count as propagated; none at all is Unknown', () => {
  assert.equal(propagationOf('uid-1', [cred(A)], [], T0).condition?.reason, 'Propagated');
  assert.deepEqual(propagationOf('uid-1', [], [], T0).condition?.status, 'Unknown');
});
