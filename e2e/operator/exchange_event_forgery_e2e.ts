/**
 * Cross-namespace Event forgery against the real API server: a namespace user creates, in its own namespace,
 * a FirstTokenExchange Event whose involvedObject names another namespace's PodIdentity. Whatever the API
 * server stores, the operator's view of the agents' Events (the same field selector, transform, key and
 * report it runs on) must attribute it to nothing outside the namespace it was created in.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test } from 'node:test';
import type { CoreV1Event } from '@kubernetes/client-node';
import { eventCreator } from '../../agent/issuance/first-exchange.js';
import { API_VERSION, EVENT_FIRST_TOKEN_EXCHANGE, PODIDENTITY_KIND } from '../../lib/api/types.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';
import { getJson } from '../../lib/k8s/rest.js';
import { EXCHANGE_EVENT_FIELD_SELECTOR, exchangeEventKey, exchangeReportOf, slimExchangeEvent } from '../../operator/podidentity/exchange-events.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';

let cluster: TestCluster;

before(async () => {
  cluster = await testCluster();
});

/** `2026-11-30T16:00:00.000000Z`: a MicroTime as the API server parses it. */
const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

test("cross-namespace Event forgery: an Event the API server stores in the attacker's namespace about the victim's PodIdentity counts for neither", async () => {
  const attacker = await cluster.namespace('attacker');
  const victim = await cluster.namespace('victim');
  const api = kubeConfigApiServer(cluster.kc);
  const create = eventCreator(api, 10_000);
  const now = new Date();
  const forged = (name: string, extra: Record<string, unknown>) => ({
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name, namespace: attacker, annotations: { 'podidentity.dev/subject': `system:serviceaccount:${victim}:app` } },
    involvedObject: { apiVersion: API_VERSION, kind: PODIDENTITY_KIND, namespace: victim, name: 'payments', uid: randomUUID() },
    reason: EVENT_FIRST_TOKEN_EXCHANGE,
    message: 'forged',
    type: 'Normal',
    source: { component: 'podidentity-agent', host: 'node-a' },
    ...extra,
  });
  // The agent's own shape (legacy: no eventTime), and the events.k8s.io-era shape (eventTime + reporting fields).
  // kube-apiserver 1.20 refuses the first (422: involvedObject.namespace must match) and stores the second.
  const legacy = await create(attacker, forged('legacy', { firstTimestamp: now.toISOString(), lastTimestamp: now.toISOString(), count: 1 }));
  const modern = await create(attacker, forged('modern', { eventTime: microTime(now), reportingComponent: 'podidentity-agent', reportingInstance: 'node-a', action: 'Exchange' }));
  const statuses = { legacy, modern };

  // What the operator's watch of the agents' Events holds: every namespace, its field selector, its transform.
  const listed = await getJson<{ items: CoreV1Event[] }>(api, '/api/v1/events', { fieldSelector: EXCHANGE_EVENT_FIELD_SELECTOR });
  const stored = listed.items.filter((e) => e.metadata?.namespace === attacker).map(slimExchangeEvent);
  assert.deepEqual(
    stored.map((e) => e.metadata?.name).sort(),
    Object.entries(statuses)
      .filter(([, status]) => status === 201)
      .map(([name]) => name)
      .sort(),
    `the API server answered ${JSON.stringify(statuses)}`,
  );
  assert.ok(stored.length > 0, `the API server refused every forged Event (${JSON.stringify(statuses)}): nothing to attack through`);
  for (const event of stored) {
    assert.equal(event.involvedObject?.namespace, victim, 'stored as the attacker wrote it');
    assert.notEqual(exchangeEventKey(event), `${victim}/payments`, `${event.metadata?.name}: keyed under the victim's PodIdentity`);
    assert.deepEqual(exchangeReportOf(event), [], `${event.metadata?.name}: read as an exchange report`);
  }
});
