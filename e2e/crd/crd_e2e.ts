import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { GROUP, PODIDENTITY_PLURAL, POLICY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { waitFor } from '../../dev/support/wait.js';

const run = promisify(execFile);
const samplesDir = fileURLToPath(new URL('../../config/samples/', import.meta.url));
const SUB = '00000000-0000-4000-8000-000000000001';
const IDENTITY_ID = `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app`;

let cluster: TestCluster;
let api: CustomObjectsApi;

before(async () => {
  cluster = await testCluster();
  api = cluster.kc.makeApiClient(CustomObjectsApi);
});

function kubectl(...args: string[]) {
  return run('kubectl', ['--kubeconfig', cluster.kubeconfigPath, ...args], { encoding: 'utf8' });
}

function podIdentity(namespace: string, name: string, spec: unknown): object {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name, namespace }, spec };
}

async function createError(body: object, namespace?: string): Promise<string> {
  try {
    if (namespace) await api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body });
    else await api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, body });
  } catch (err) {
    const e = err as { code?: number; body?: string };
    assert.equal(e.code, 422, `expected 422 Unprocessable Entity, got ${e.code}: ${e.body}`);
    return (JSON.parse(e.body ?? '{}') as { message?: string }).message ?? '';
  }
  assert.fail('the API server accepted an invalid object');
}

describe('CRDs on a real API server', () => {
  test('every sample is accepted', async () => {
    const namespace = await cluster.namespace('samples');
    for (const file of readdirSync(samplesDir).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(readFileSync(join(samplesDir, file), 'utf8'))) {
        const obj = doc.toJS() as { kind: string; metadata: { namespace?: string; name: string } };
        if (obj.kind === 'PodIdentity') {
          obj.metadata.namespace = namespace;
          await api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: obj });
        } else if (obj.kind === 'PodIdentityPolicy') {
          obj.metadata.name = `${obj.metadata.name}-${namespace}`;
          await api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, body: obj });
          await api.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name: obj.metadata.name });
        }
      }
    }
    const list = (await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL })) as { items: PodIdentity[] };
    assert.ok(list.items.length >= 3);
    const federated = list.items.find((p) => p.spec.mode === 'Federated');
    assert.equal(federated?.spec.deletionPolicy, 'Delete', 'deletionPolicy defaults to Delete');
  });

  // Kubernetes 1.20 names array items without an index (spec.roleAssignments.scope); newer servers add [0].
  const invalid: { what: string; spec: unknown; expect: RegExp }[] = [
    { what: 'missing spec.identity', spec: { mode: 'Federated' }, expect: /spec\.identity: Required value/ },
    { what: 'both managed and existing', spec: { identity: { managed: {}, existing: { resourceId: IDENTITY_ID } } }, expect: /spec\.identity.*(oneOf|one and only one)/s },
    { what: 'neither managed nor existing', spec: { identity: {} }, expect: /spec\.identity.*(oneOf|one and only one)/s },
    { what: 'unknown mode', spec: { identity: { managed: {} }, mode: 'Sidecar' }, expect: /spec\.mode: Unsupported value: "Sidecar"/ },
    { what: 'unknown deletionPolicy', spec: { identity: { managed: {} }, deletionPolicy: 'Orphan' }, expect: /spec\.deletionPolicy: Unsupported value: "Orphan"/ },
    { what: 'malformed existing resource id', spec: { identity: { existing: { resourceId: '/subscriptions/not-a-guid/rg/x' } } }, expect: /spec\.identity\.existing\.resourceId in body should match/ },
    { what: 'existing without resourceId', spec: { identity: { existing: {} } }, expect: /spec\.identity\.existing\.resourceId: Required value/ },
    { what: 'malformed scope', spec: { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: 'subscriptions/abc' }] }, expect: /spec\.roleAssignments(\[0\])?\.scope in body should match/ },
    { what: 'role assignment without role', spec: { identity: { managed: {} }, roleAssignments: [{ scope: `/subscriptions/${SUB}` }] }, expect: /spec\.roleAssignments(\[0\])?\.role: Required value/ },
    {
      what: 'too many role assignments',
      spec: { identity: { managed: {} }, roleAssignments: Array.from({ length: 21 }, () => ({ role: 'Reader', scope: `/subscriptions/${SUB}` })) },
      expect: /spec\.roleAssignments.*(Too many: 21: must have at most 20 items|should have at most 20 items)/,
    },
    { what: 'malformed roleDefinitionId', spec: { identity: { managed: {} }, roleAssignments: [{ role: '/providers/Microsoft.Authorization/roleDefinitions/xyz', scope: `/subscriptions/${SUB}` }] }, expect: /spec\.roleAssignments(\[0\])?\.role in body should match/ },
    { what: 'invalid managed identity name', spec: { identity: { managed: { name: 'a' } } }, expect: /spec\.identity\.managed\.name in body should match/ },
    // Issue 11 item 1: ids the ARM SDK's URL handling would resolve to another scope (the operator re-checks).
    ...[
      `/subscriptions/${SUB}/resourceGroups/team-a/providers/../../..`,
      `/subscriptions/${SUB}/resourceGroups/team-a/providers/../../../resourceGroups/prod`,
      `/subscriptions/${SUB}/resourceGroups/team-a/providers/Microsoft.Storage/storageAccounts/%2e%2e`,
      `/subscriptions/${SUB}/resourceGroups/team-a/providers/Microsoft.Storage/storageAccounts/a b`,
      `/subscriptions/${SUB}/resourceGroups/team-a/providers/Microsoft.Storage/storageAccounts/x/`,
      `/subscriptions/${SUB}/resourceGroups/team-a//providers/Microsoft.Storage/storageAccounts/x`,
      `/subscriptions/${SUB}/resourceGroups/..`,
    ].map((scope) => ({ what: `the escaping scope ${JSON.stringify(scope)}`, spec: { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope }] }, expect: /spec\.roleAssignments(\[0\])?\.scope in body should match/ })),
    { what: 'a dot-segment existing identity id', spec: { identity: { existing: { resourceId: `/subscriptions/${SUB}/resourceGroups/../providers/Microsoft.ManagedIdentity/userAssignedIdentities/app` } } }, expect: /spec\.identity\.existing\.resourceId in body should match/ },
    { what: 'managed resource group ".."', spec: { identity: { managed: { resourceGroup: '..' } } }, expect: /spec\.identity\.managed\.resourceGroup in body should match/ },
    { what: 'invalid service account name', spec: { identity: { managed: {} }, serviceAccounts: ['Not_Valid'] }, expect: /spec\.serviceAccounts(\[0\])? in body should match/ },
  ];

  for (const { what, spec, expect } of invalid) {
    test(`rejects a PodIdentity with ${what}`, async () => {
      const namespace = await cluster.namespace('invalid');
      const message = await createError(podIdentity(namespace, 'bad', spec), namespace);
      assert.match(message, expect);
    });
  }

  for (const glob of ['subscriptions/no-leading-slash', `/subscriptions/${SUB}/**/resourceGroups`, '/subscriptions//x', `/subscriptions/${SUB}/resourceGroups/team-a/..`, `/subscriptions/${SUB}/resourceGroups/./**`]) {
    test(`rejects a PodIdentityPolicy with the malformed scope glob ${glob}`, async () => {
      const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentityPolicy', metadata: { name: `bad-${Date.now()}` }, spec: { allowedScopes: [glob] } };
      assert.match(await createError(body), /spec\.allowedScopes(\[0\])? in body should match/);
    });
  }

  test('spec updates ignore status, and status updates ignore spec (status subresource)', async () => {
    const namespace = await cluster.namespace('status');
    const created = (await api.createNamespacedCustomObject({
      group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL,
      body: podIdentity(namespace, 'app', { identity: { managed: {} }, mode: 'Federated' }),
    })) as PodIdentity;
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const afterSpecPatch = (await api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'app', body: { spec: { mode: 'Node' }, status: { clientId: 'forged' } } },
      merge,
    )) as PodIdentity;
    assert.equal(afterSpecPatch.spec.mode, 'Node');
    assert.equal(afterSpecPatch.status?.clientId, undefined, 'status written through the main resource is ignored');
    assert.equal(afterSpecPatch.metadata.generation, (created.metadata.generation ?? 0) + 1);

    const afterStatusPatch = (await api.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'app', body: { spec: { mode: 'Federated' }, status: { clientId: 'real' } } },
      merge,
    )) as PodIdentity;
    assert.equal(afterStatusPatch.status?.clientId, 'real');
    assert.equal(afterStatusPatch.spec.mode, 'Node', 'spec written through /status is ignored');
    assert.equal(afterStatusPatch.metadata.generation, afterSpecPatch.metadata.generation, 'status writes do not bump generation');
  });

  test('resourceVersion conflicts are detected', async () => {
    const namespace = await cluster.namespace('conflict');
    const created = (await api.createNamespacedCustomObject({
      group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: podIdentity(namespace, 'app', { identity: { managed: {} } }),
    })) as PodIdentity;
    const stale = structuredClone(created);
    created.spec.mode = 'Node';
    await api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'app', body: created });
    stale.spec.mode = 'Federated';
    await assert.rejects(
      api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'app', body: stale }),
      (err: { code?: number }) => err.code === 409,
    );
  });

  test('kubectl get pid shows the printer columns', async () => {
    const namespace = await cluster.namespace('columns');
    await api.createNamespacedCustomObject({
      group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, body: podIdentity(namespace, 'app', { identity: { managed: {} } }),
    });
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await api.patchNamespacedCustomObjectStatus(
      {
        group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name: 'app',
        body: {
          status: {
            mode: 'Federated',
            clientId: '11111111-2222-3333-4444-555555555555',
            conditions: [{ type: 'Ready', status: 'True', reason: 'Reconciled', message: 'ok', lastTransitionTime: new Date().toISOString() }],
          },
        },
      },
      merge,
    );
    const { stdout } = await kubectl('get', 'pid', '-n', namespace);
    const [header, row] = stdout.trim().split('\n');
    assert.deepEqual(header?.split(/\s+/), ['NAME', 'READY', 'REASON', 'MODE', 'CLIENTID', 'AGE']);
    assert.match(row ?? '', /^app\s+True\s+Reconciled\s+Federated\s+11111111-2222-3333-4444-555555555555\s+\S+$/);
  });

  test('kubectl explain teaches the API', async () => {
    // The API server publishes a new CRD's OpenAPI a few seconds after it is Established.
    const stdout = await waitFor('CRD OpenAPI published', async () => (await kubectl('explain', 'podidentity.spec.identity')).stdout, { timeoutMs: 60_000, intervalMs: 500 });
    assert.match(stdout, /exactly one of `managed`/);
    assert.match(stdout, /existing\s+<Object>/);
    assert.match(stdout, /managed\s+<Object>/);
    const policy = await kubectl('explain', 'podidentitypolicy.spec.allowedScopes');
    assert.match(policy.stdout, /glob/);
  });
});
