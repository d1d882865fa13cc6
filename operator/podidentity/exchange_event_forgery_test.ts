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
