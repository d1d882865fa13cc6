/**
 * What `pod-identity migrate` writes is accepted by the real CRD on the API server (server-side dry-run
 * create, so the OpenAPI schema, patterns and defaults all apply), in both modes.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, PODIDENTITY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { migrate } from '../../operator/migrate/migrate.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { parseObjects } from '../../dev/local-cluster/kubelet/render.js';

const SUB = '00000000-0000-4000-8000-000000000001';

function legacyInput(ns: string): string {
  // Azure names may hold characters Kubernetes names can't (the object is "billing-v2", the identity "billing_v2").
  const identity = (name: string, rg = 'identities', azureName = name) => `apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: ${name}, namespace: ${ns}}
spec:
  type: 0
  resourceID: /subscriptions/${SUB}/resourcegroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${azureName}
  clientID: 11111111-2222-4333-8444-555555555555`;
  const binding = (name: string, identityName: string, selector: string) => `apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: ${name}, namespace: ${ns}}
spec: {azureIdentity: ${identityName}, selector: ${selector}}`;
  return [
    identity('orders-id'),
    binding('orders-binding', 'orders-id', 'orders'),
    identity('billing-v2', 'rg.with(parens)', 'billing_v2'),
    binding('billing-web', 'billing-v2', 'billing-web'),
    binding('billing-api', 'billing-v2', 'billing.api'),
    `apiVersion: aadpodidentity.k8s.io/v1
kind: AzurePodIdentityException
metadata: {name: addons, namespace: kube-system}
spec: {podLabels: {component: cloud-node-manager}}`,
  ].join('\n---\n');
}

let cluster: TestCluster;
let api: CustomObjectsApi;
let core: CoreV1Api;

before(async () => {
  cluster = await testCluster();
  api = cluster.kc.makeApiClient(CustomObjectsApi);
  core = cluster.kc.makeApiClient(CoreV1Api);
});

describe('migrated PodIdentities on a real API server', () => {
  for (const mode of ['Node', 'Federated'] as const) {
    test(`--mode ${mode}: every object the migration writes passes a server-side dry-run create`, async () => {
      const namespace = await cluster.namespace('migrate');
      const { output, podIdentities } = migrate(legacyInput(namespace), { mode });
      const objects = parseObjects(output);
      assert.equal(podIdentities.length, 2);
      assert.deepEqual(objects.map((o) => o.kind).sort(), ['ConfigMap', 'PodIdentity', 'PodIdentity']);
      for (const obj of objects) {
        if (obj.kind === 'PodIdentity') {
          const created = (await api.createNamespacedCustomObject({
            group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace, body: obj, dryRun: 'All',
          })) as PodIdentity;
          assert.equal(created.spec.mode, mode);
          assert.equal(created.spec.deletionPolicy, 'Retain');
          assert.ok(created.spec.identity.existing?.resourceId);
        } else {
          // The exceptions ConfigMap targets the product's namespace; validate it in the test namespace.
          await core.createNamespacedConfigMap({ namespace, body: { ...obj, metadata: { ...obj.metadata, namespace } }, dryRun: 'All' });
        }
      }
      const list = (await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace })) as { items: unknown[] };
      assert.equal(list.items.length, 0, 'a dry run stores nothing');
    });
  }
});
