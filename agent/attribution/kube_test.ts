import assert from 'node:assert/strict';
import { test } from 'node:test';
import { slimPodIdentity } from './kube.js';

test('a cached PodIdentity keeps what attribution and issuance read, without managedFields and annotations', () => {
  const pid = {
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentity',
    metadata: {
      name: 'web',
      namespace: 'demo',
      uid: 'u-1',
      resourceVersion: '7',
      labels: { team: 'a' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"spec":{}}' },
      managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
    },
    spec: { identity: { managed: {} }, selector: { matchLabels: { app: 'web' } }, mode: 'Federated' as const },
    status: { clientId: 'c', tenantId: 't', conditions: [{ type: 'Ready', status: 'True' }] },
  };
  const slim = slimPodIdentity(pid as unknown as Parameters<typeof slimPodIdentity>[0]);
  assert.deepEqual(slim.metadata, { name: 'web', namespace: 'demo', uid: 'u-1', resourceVersion: '7', labels: { team: 'a' } });
  assert.deepEqual(slim.spec, pid.spec);
  assert.deepEqual(slim.status, pid.status);
  assert.equal(pid.metadata.managedFields.length, 1, 'the informer may still hand the original to others: never mutated');
});
