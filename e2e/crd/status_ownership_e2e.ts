/**
 * Status is the operator's ownership record (finalisation acts on status.resourceId and the grants status
 * records; the agent issues tokens for status.clientId). A namespace user holding the shipped role
 * (config/components/namespace-user-roles) must not be able to write it: not through the status subresource,
 * not by creating a PodIdentity with a status, not by updating the main resource with one.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, RbacAuthorizationV1Api, setHeaderOptions, type V1ClusterRole } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { GROUP, PODIDENTITY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';

const rolesFile = fileURLToPath(new URL('../../config/components/namespace-user-roles/roles.yaml', import.meta.url));
const VICTIM_ID = '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/pods/providers/Microsoft.ManagedIdentity/userAssignedIdentities/victim_web';
const forged = { resourceId: VICTIM_ID, clientId: '11111111-1111-4111-8111-111111111111', principalId: '22222222-2222-4222-8222-222222222222', mode: 'Node', roleAssignments: [{ role: 'Reader', scope: '/subscriptions/00000000-0000-4000-8000-000000000001', roleDefinitionId: 'acdd72a7-3385-48ef-bd42-f606fba81ae7', state: 'Assigned' }] };

let cluster: TestCluster;
let namespace: string;
let user: CustomObjectsApi;
const suffix = `-${process.pid}-${Date.now().toString(36)}`;
const createdRoles: string[] = [];

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

before(async () => {
  cluster = await testCluster();
  namespace = await cluster.namespace('status-owner');
  const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
  const core = cluster.kc.makeApiClient(CoreV1Api);
  // The shipped roles, under names of this run (ClusterRoles are cluster-wide; other suites run alongside).
  const roles = parseAllDocuments(readFileSync(rolesFile, 'utf8')).map((d) => d.toJS() as V1ClusterRole);
  for (const role of roles) {
    const name = `${role.metadata!.name}${suffix}`;
    await rbac.createClusterRole({ body: { ...role, metadata: { name, labels: {} } } });
    createdRoles.push(name);
  }
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'alice' } } });
  for (const role of createdRoles) {
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: { metadata: { name: role }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role }, subjects: [{ kind: 'ServiceAccount', name: 'alice', namespace }] },
    });
  }
  const minted = await core.createNamespacedServiceAccountToken({ namespace, name: 'alice', body: { spec: { audiences: [], expirationSeconds: 600 } } });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: cluster.server, caData: Buffer.from(cluster.caPem).toString('base64') }],
    users: [{ name: 'alice', token: minted.status!.token }],
    contexts: [{ name: 'c', cluster: 'local', user: 'alice' }],
    currentContext: 'c',
  });
  user = kc.makeApiClient(CustomObjectsApi);
});

after(async () => {
  const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
  await Promise.allSettled(createdRoles.map((name) => rbac.deleteClusterRole({ name })));
});

const ref = (name: string) => ({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name });

describe('a namespace user cannot forge the ownership record (status)', () => {
  test('creating a PodIdentity with a forged status claiming another namespace\'s identity: the status is dropped', async () => {
    const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name: 'forged-create', namespace }, spec: { identity: { managed: {} } }, status: forged };
    await user.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body });
    const stored = (await user.getNamespacedCustomObject(ref('forged-create'))) as PodIdentity;
    assert.equal(stored.status, undefined);
  });

  test('updating the main resource with a forged status: the status is unchanged', async () => {
    const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name: 'forged-update', namespace }, spec: { identity: { managed: {} } } };
    await user.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body });
    await user.patchNamespacedCustomObject({ ...ref('forged-update'), body: { spec: { serviceAccounts: ['web'] }, status: forged } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const stored = (await user.getNamespacedCustomObject(ref('forged-update'))) as PodIdentity;
    assert.deepEqual(stored.spec.serviceAccounts, ['web'], 'the spec change went through');
    assert.equal(stored.status, undefined, 'the status did not');
  });

  test('writing the status subresource with the shipped namespace-user role is forbidden', async () => {
    const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name: 'forged-status', namespace }, spec: { identity: { managed: {} } } };
    await user.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body });
    const err = await user
      .patchNamespacedCustomObjectStatus({ ...ref('forged-status'), body: { status: forged } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
      .then(() => undefined, (e: unknown) => e);
    assert.equal(statusCode(err), 403, 'status writes are the operator\'s alone');
    const stored = (await user.getNamespacedCustomObject(ref('forged-status'))) as PodIdentity;
    assert.equal(stored.status, undefined);
  });
});
