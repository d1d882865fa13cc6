import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../../dev/support/wait.js';
import { FirstExchangeReporter, SUBJECT_ANNOTATION } from './first-exchange.js';
import type { ReadyIdentity } from './select.js';

const SUBJECT = 'system:serviceaccount:ns:app';
const written = Date.parse('2026-11-30T12:00:00Z');
const identity: ReadyIdentity = {
  namespace: 'ns',
  name: 'web',
  uid: 'uid-web',
  mode: 'Federated',
  clientId: 'c',
  principalId: 'p',
  tenantId: 't',
  resourceId: 'r',
  propagated: false,
  credentialWrites: new Map([[SUBJECT, written]]),
};

function recorder(status = 201) {
  const events: { namespace: string; event: Record<string, unknown> }[] = [];
  return { events, create: (namespace: string, event: Record<string, unknown>) => (events.push({ namespace, event }), Promise.resolve(status)) };
}

test('one FirstTokenExchange Event per node and credential write, on the PodIdentity, naming the subject and node', async () => {
  const r = recorder();
  const reporter = new FirstExchangeReporter(r.create, 'node-a');
  reporter.exchanged(identity, SUBJECT);
  reporter.exchanged(identity, SUBJECT);
  await waitFor('the event', () => r.events.length === 1);
  const { namespace, event } = r.events[0]!;
  assert.equal(namespace, 'ns');
  assert.equal(event['reason'], 'FirstTokenExchange');
  assert.deepEqual(event['involvedObject'], { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentity', name: 'web', namespace: 'ns', uid: 'uid-web' });
  assert.deepEqual((event['source'] as Record<string, string>)['host'], 'node-a');
  assert.equal((event['metadata'] as { annotations: Record<string, string> }).annotations[SUBJECT_ANNOTATION], SUBJECT);
  // A new write of the credential is a new propagation to report.
  reporter.exchanged({ ...identity, credentialWrites: new Map([[SUBJECT, written + 60_000]]) }, SUBJECT);
  await waitFor('the second event', () => r.events.length === 2);
  assert.notEqual((r.events[1]!.event['metadata'] as { name: string }).name, (event['metadata'] as { name: string }).name);
  // Another node's agent names its Event differently; a restarted agent names it the same (409, deduplicated).
  const other = recorder();
  new FirstExchangeReporter(other.create, 'node-b').exchanged(identity, SUBJECT);
  new FirstExchangeReporter(other.create, 'node-a').exchanged(identity, SUBJECT);
  await waitFor('two more', () => other.events.length === 2);
  assert.notEqual((other.events[0]!.event['metadata'] as { name: string }).name, (event['metadata'] as { name: string }).name);
  assert.equal((other.events[1]!.event['metadata'] as { name: string }).name, (event['metadata'] as { name: string }).name);
});

test('nothing to report once the operator recorded propagation, or for a credential with no recorded write', async () => {
  const r = recorder();
  const reporter = new FirstExchangeReporter(r.create, 'node-a');
  reporter.exchanged({ ...identity, propagated: true }, SUBJECT);
  reporter.exchanged({ ...identity, credentialWrites: new Map([[SUBJECT, null]]) }, SUBJECT);
  reporter.exchanged(identity, 'system:serviceaccount:ns:other');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(r.events.length, 0);
});

test('a failed Event is tried again at the next exchange; a refused one never blocks issuance', async () => {
  let calls = 0;
  const reporter = new FirstExchangeReporter(() => (calls++, Promise.reject(new Error('apiserver down'))), 'node-a');
  reporter.exchanged(identity, SUBJECT);
  await waitFor('first try', () => calls === 1);
  await new Promise((resolve) => setImmediate(resolve));
  reporter.exchanged(identity, SUBJECT);
  await waitFor('second try', () => calls === 2);
});
