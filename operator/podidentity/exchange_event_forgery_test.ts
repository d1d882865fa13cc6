import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CoreV1Event } from '@kubernetes/client-node';
import { EVENT_FIRST_TOKEN_EXCHANGE, PODIDENTITY_KIND } from '../../lib/api/types.js';
import { exchangeEventKey, exchangeReportOf, slimExchangeEvent } from './exchange-events.js';

/** A FirstTokenExchange Event as the API server stores it: `namespace` is where it was created (RBAC's scope). */
function exchangeEvent(namespace: string, involved: { namespace?: string; name: string; uid: string }): CoreV1Event {
  return slimExchangeEvent({
    metadata: { name: `${involved.name}.0123456789abcdef`, namespace, creationTimestamp: new Date('2026-11-30T12:00:03Z'), annotations: { 'podidentity.dev/subject': 'system:serviceaccount:victim:app' } },
    involvedObject: { apiVersion: 'podidentity.dev/v1alpha1', kind: PODIDENTITY_KIND, ...involved },
    reason: EVENT_FIRST_TOKEN_EXCHANGE,
    source: { host: 'node-a' },
  } as CoreV1Event);
}

describe('FirstTokenExchange Event forgery', () => {
  test("cross-namespace Event forgery: an Event created in the attacker's namespace about another namespace's PodIdentity reaches neither its key nor its status", () => {
    // A namespace user may create Events in its own namespace; one that names another namespace's PodIdentity
    // (the API server accepts an involvedObject in another namespace on new-style Events) must count for nothing.
    const forged = exchangeEvent('attacker', { namespace: 'victim', name: 'payments', uid: 'victim-uid' });
    assert.notEqual(exchangeEventKey(forged), 'victim/payments');
    assert.deepEqual(exchangeReportOf(forged), []);
  });

  test("an Event about a PodIdentity of its own namespace is keyed and read as the agent wrote it", () => {
    const genuine = exchangeEvent('victim', { namespace: 'victim', name: 'payments', uid: 'victim-uid' });
    assert.equal(exchangeEventKey(genuine), 'victim/payments');
    assert.deepEqual(exchangeReportOf(genuine), [{ uid: 'victim-uid', subject: 'system:serviceaccount:victim:app', at: Date.parse('2026-11-30T12:00:03Z'), node: 'node-a' }]);
  });

  test("an Event whose involvedObject names no namespace counts for its own namespace only", () => {
    const bare = exchangeEvent('attacker', { name: 'payments', uid: 'victim-uid' });
    assert.equal(exchangeEventKey(bare), 'attacker/payments');
  });
});

describe('FirstTokenExchange Event bloat', () => {
  test("cache bloat through forged Events: the operator keeps at most a service account's subject and a node name of each, however large the Event", () => {
    const huge = 'x'.repeat(200_000);
    const bloated = slimExchangeEvent({
      metadata: { name: 'pid.0123456789abcdef', namespace: 'attacker', creationTimestamp: new Date('2026-11-30T12:00:03Z'), annotations: { 'podidentity.dev/subject': `system:serviceaccount:attacker:${huge}` } },
      involvedObject: { kind: PODIDENTITY_KIND, namespace: 'attacker', name: 'pid', uid: 'uid-1' },
      reason: EVENT_FIRST_TOKEN_EXCHANGE,
      source: { host: huge },
    } as CoreV1Event);
    const bloatedReference = slimExchangeEvent({
      metadata: { name: 'pid.0123456789abcdef', namespace: 'attacker', creationTimestamp: new Date('2026-11-30T12:00:03Z'), annotations: { 'podidentity.dev/subject': 'system:serviceaccount:attacker:app' } },
      involvedObject: { kind: PODIDENTITY_KIND, namespace: huge, name: huge, uid: huge },
      reason: EVENT_FIRST_TOKEN_EXCHANGE,
    } as CoreV1Event);
    assert.ok(JSON.stringify(bloatedReference).length < 2_000, `${JSON.stringify(bloatedReference).length} bytes kept of one Event's reference`);
    assert.equal(exchangeEventKey(bloatedReference), undefined, 'a reference too long to name a PodIdentity is keyed nowhere');
    assert.ok(JSON.stringify(bloated).length < 2_000, `${JSON.stringify(bloated).length} bytes kept of one Event`);
    assert.deepEqual(exchangeReportOf(bloated), [], 'a subject no service account can have reports nothing');
  });
});
