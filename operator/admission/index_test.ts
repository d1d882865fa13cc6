import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.js';
import { startAgentTokenAdmission } from './index.js';

function fakeStore() {
  let obj: V1ValidatingWebhookConfiguration = {
    metadata: { name: 'cfg', resourceVersion: '1' },
    webhooks: [{ name: 'a.podidentity.dev', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: {}, matchConditions: [{ name: 'only-the-pod-identity-agent', expression: "request.userInfo.username == 'system:serviceaccount:podidentity-system:podidentity-agent'" }] }],
  };
  return {
    writes: 0,
    read: async () => structuredClone(obj),
    async replace(next: V1ValidatingWebhookConfiguration) {
      this.writes++;
      obj = structuredClone(next);
    },
  };
}

test('an --agent-service-account that names no ServiceAccount (agent renamed by a kustomize namePrefix) keeps the webhook unpublished and the operator not Ready', async () => {
  // The webhook constrains only that username: a wrong name would leave the real agent unchecked (fail open).
  const store = fakeStore();
  const admission = await startAgentTokenAdmission({
    kubeConfig: new KubeConfig(),
    logger: createLogger('test', 'error'),
    port: 0,
    host: '127.0.0.1',
    hosts: ['127.0.0.1'],
    configurationName: 'cfg',
    agent: { namespace: 'podidentity-system', serviceAccount: 'podidentity-agent' },
    podName: 'op-1',
    podNamespace: 'podidentity-system',
    pods: { get: async () => undefined },
    identities: { inNamespace: async () => [] },
    caBundleStore: store,
    serviceAccounts: { exists: async (ns, name) => ns === 'podidentity-system' && name === 'prod-podidentity-agent' },
  });
  try {
    assert.equal(admission.ready(), false);
    assert.equal(store.writes, 0, 'nothing published for an agent that does not exist');
  } finally {
    await admission.close();
  }
});

test('with the agent’s ServiceAccount present the certificate is published and the operator is Ready', async () => {
  const store = fakeStore();
  const admission = await startAgentTokenAdmission({
    kubeConfig: new KubeConfig(),
    logger: createLogger('test', 'error'),
    port: 0,
    host: '127.0.0.1',
    hosts: ['127.0.0.1'],
    configurationName: 'cfg',
    agent: { namespace: 'podidentity-system', serviceAccount: 'podidentity-agent' },
    podName: 'op-1',
    podNamespace: 'podidentity-system',
    pods: { get: async () => undefined },
    identities: { inNamespace: async () => [] },
    caBundleStore: store,
    serviceAccounts: { exists: async () => true },
  });
  try {
    assert.equal(admission.ready(), true);
    assert.equal(store.writes, 1);
  } finally {
    await admission.close();
  }
});
