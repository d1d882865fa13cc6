import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FINALIZER, type Condition, type PodIdentityPolicy } from '../../lib/api/types.js';
import { ThrottledError } from '../azure/errors.js';
import { identityResourceId, roleAssignmentName } from '../azure/ids.js';
import { scaleSetResourceId } from '../testing/fake-azure.js';
import { defaultIdentityName, federatedCredentialName, MANAGED_BY, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID } from './names.js';
import { harness, SUB } from '../testing/podidentity-harness.js';
import { keysSelecting } from './watches.js';

const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;
const READER = `/subscriptions/${SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7`;
const allowAll = (extra: Partial<PodIdentityPolicy['spec']> = {}): PodIdentityPolicy => ({
  apiVersion: 'podidentity.dev/v1alpha1',
  kind: 'PodIdentityPolicy',
  metadata: { name: 'all' },
  spec: { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [RG('data')], allowedExistingIdentities: [`${RG('shared')}/**`], ...extra },
});
const cond = (status: { conditions?: Condition[] } | undefined, type: string) =>
  status?.conditions?.find((c) => c.type === type);

describe('PodIdentity reconciler', () => {
  it('creates the identity, role assignments and federated credentials, then goes Ready; a second pass writes nothing', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['prewarm'] });
    world.addPod('team', 'web-1', { 'podidentity.dev/identity': 'web' }, { serviceAccountName: 'web-sa' });
    world.addPod('team', 'other', { app: 'other' }, { serviceAccountName: 'not-me' });
    await settle('team/web');

    const pid = world.pids.get('team/web')!;
    assert.deepEqual(pid.metadata.finalizers, [FINALIZER]);
    const id = identityResourceId(SUB, 'pods', defaultIdentityName('team', 'web'));
    const identity = azure.identitiesById.get(id.toLowerCase())!;
    assert.ok(identity, 'identity created under the default name');
    assert.equal(identity.tags[TAG_MANAGED_BY], MANAGED_BY);
    assert.equal(identity.tags[TAG_NAMESPACE], 'team');
    assert.equal(pid.status?.clientId, identity.clientId);
    assert.equal(pid.status?.principalId, identity.principalId);
    assert.equal(pid.status?.resourceId, id);
    assert.equal(pid.status?.observedGeneration, 1);
    assert.equal(cond(pid.status, 'Ready')?.status, 'True');
    for (const t of ['IdentityReady', 'RolesAssigned', 'CredentialsReady']) assert.equal(cond(pid.status, t)?.status, 'True', t);

    const ras = [...azure.assignments.values()];
    assert.equal(ras.length, 1);
    assert.equal(ras[0]?.name, roleAssignmentName(identity.principalId, READER, RG('data')));
    const fics = azure.fics.get(id.toLowerCase()) ?? [];
    assert.deepEqual(fics.map((f) => f.subject).sort(), ['system:serviceaccount:team:prewarm', 'system:serviceaccount:team:web-sa']);
    assert.ok(fics.every((f) => f.issuer === 'https://issuer.example' && f.audiences[0] === 'api://AzureADTokenExchange'));
    assert.ok(world.events.some((e) => e.reason === 'Ready'));
    // Each Event is an API-server write: the Ready that follows at once stands for IdentityReady too.
    assert.deepEqual(world.events.filter((e) => e.key === 'team/web').map((e) => e.reason), ['Ready']);

    const calls = azure.calls.length;
    const patches = world.statusPatches;
    const ltt = cond(pid.status, 'Ready')?.lastTransitionTime;
    await settle('team/web');
    assert.equal(azure.calls.length, calls, 'converged: no Azure calls');
    assert.equal(world.statusPatches, patches, 'converged: no status write');
    assert.equal(cond(world.pids.get('team/web')!.status, 'Ready')?.lastTransitionTime, ltt);
  });

  it('converges spec changes: removes roles that left the spec, never others; follows pods\' service accounts', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }, { role: 'Contributor', scope: RG('data') }] });
    await settle('team/web');
    const principal = world.pids.get('team/web')!.status!.principalId!;
    // An assignment someone else made for the same principal.
    await azure.roles.ensure('11111111-1111-4111-8111-111111111111', RG('other'), READER, principal);
    assert.equal(azure.assignments.size, 3);

    world.updateSpec('team/web', (s) => (s.roleAssignments = [{ role: 'Contributor', scope: RG('data') }]));
    world.addPod('team', 'p', { 'podidentity.dev/identity': 'web' }, { serviceAccountName: 'sa1' });
    await settle('team/web');
    const names = [...azure.assignments.values()].map((a) => a.name).sort();
    assert.equal(names.length, 2);
    assert.ok(names.includes('11111111-1111-4111-8111-111111111111'), 'foreign assignment untouched');
    const pid = world.pids.get('team/web')!;
    assert.equal(pid.status?.observedGeneration, 2);
    assert.deepEqual(pid.status?.federatedCredentials?.map((f) => f.subject), ['system:serviceaccount:team:sa1']);

    world.removePod('team', 'p');
    world.updateSpec('team/web', (s) => (s.selector = { matchLabels: { app: 'x' } }));
    await settle('team/web');
    assert.deepEqual(azure.fics.get(pid.status!.resourceId!.toLowerCase()), []);
  });

  it('deletes FICs, role assignments and the identity with Delete, then removes the finalizer', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['a'] });
    await settle('team/web');
    world.delete('team/web');
    await settle('team/web');
    assert.equal(world.pids.has('team/web'), false, 'finalizer removed, object gone');
    assert.equal(azure.identitiesById.size, 0);
    assert.equal(azure.assignments.size, 0);
  });

  it('leaves Azure alone with Retain', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['a'], deletionPolicy: 'Retain' });
    await settle('team/web');
    const writes = azure.calls.filter((c) => /create|delete|update/.test(c)).length;
    world.delete('team/web');
    await settle('team/web');
    assert.equal(world.pids.has('team/web'), false);
    assert.equal(azure.identitiesById.size, 1);
    assert.equal(azure.assignments.size, 1);
    assert.equal(azure.calls.filter((c) => /create|delete|update/.test(c)).length, writes);
  });

  it('treats Azure 404 during deletion as already gone (never strands the finalizer)', async () => {
    const { world, azure, settle } = harness();
    world.create('team', 'web', { identity: { managed: {} } });
    await settle('team/web');
    azure.identitiesById.clear();
    world.delete('team/web');
    await settle('team/web');
    assert.equal(world.pids.has('team/web'), false);
  });

  it('denies by policy with no Azure call at all, naming the entry, with an Event', async () => {
    const { world, azure, settle } = harness();
    world.namespaces.set('x', {});
    world.policyList = [allowAll()];
    world.create('x', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }, { role: 'Owner', scope: RG('data') }] });
    await settle('x/web');
    const pid = world.pids.get('x/web')!;
    assert.deepEqual(azure.calls.filter((c) => c !== 'roleDefinitions.resolve'), [], 'no Azure writes (only a role lookup)');
    assert.equal(pid.metadata.finalizers, undefined);
    const ready = cond(pid.status, 'Ready');
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.reason, 'PolicyDenied');
    assert.equal(ready?.message, 'roleAssignments[1]: role "Owner" is not allowed in namespace "x" by any PodIdentityPolicy');
    assert.equal(pid.status?.roleAssignments?.[1]?.state, 'Denied');
    assert.ok(world.events.some((e) => e.type === 'Warning' && e.reason === 'PolicyDenied' && e.message.includes('roleAssignments[1]')));
    const events = world.events.length;
    await settle('x/web');
    assert.equal(world.events.length, events, 'no repeated Event while nothing changes');
  });

  it('removes role assignments a tightened policy no longer allows', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }, { role: 'Contributor', scope: RG('data') }] });
    await settle('team/web');
    assert.equal(azure.assignments.size, 2);
    world.policyList = [allowAll({ allowedRoles: ['Reader'] })];
    await settle('team/web');
    const left = [...azure.assignments.values()];
    assert.equal(left.length, 1);
    assert.equal(left[0]?.roleDefinitionId, READER);
    assert.equal(cond(world.pids.get('team/web')!.status, 'Ready')?.reason, 'PolicyDenied');
  });

  it('removes our federated credentials and role assignments when a tightened policy no longer allows the identity', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    const existing = azure.seedIdentity(identityResourceId(SUB, 'shared', 'legacy'));
    world.create('team', 'legacy', { identity: { existing: { resourceId: existing.id } }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['a'] });
    await settle('team/legacy');
    assert.equal(azure.fics.get(existing.id.toLowerCase())?.length, 1);
    assert.equal(azure.assignments.size, 1);
    world.policyList = [allowAll({ allowedExistingIdentities: [] })];
    await settle('team/legacy');
    assert.equal(cond(world.pids.get('team/legacy')!.status, 'Ready')?.reason, 'PolicyDenied');
    assert.deepEqual(azure.fics.get(existing.id.toLowerCase()), [], 'the service account can no longer exchange tokens for it');
    assert.equal(azure.assignments.size, 0);
    assert.equal(azure.identitiesById.size, 1, 'an existing identity is never deleted');
  });

  it('adopts an allowed existing identity and never deletes it', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    const existing = azure.seedIdentity(identityResourceId(SUB, 'shared', 'legacy'));
    world.create('team', 'legacy', { identity: { existing: { resourceId: existing.id } }, serviceAccounts: ['a'] });
    await settle('team/legacy');
    assert.equal(world.pids.get('team/legacy')!.status?.clientId, existing.clientId);
    assert.equal(cond(world.pids.get('team/legacy')!.status, 'IdentityReady')?.reason, 'IdentityFound');
    world.delete('team/legacy');
    await settle('team/legacy');
    assert.equal(world.pids.has('team/legacy'), false);
    assert.equal(azure.identitiesById.size, 1, 'existing identity kept');
    assert.deepEqual(azure.fics.get(existing.id.toLowerCase()), [], 'our FIC removed');

    world.create('team', 'missing', { identity: { existing: { resourceId: identityResourceId(SUB, 'shared', 'nope') } } });
    const result = await (async () => {
      await settle('team/missing').catch(() => undefined);
      return world.pids.get('team/missing')!.status;
    })();
    assert.equal(cond(result, 'IdentityReady')?.reason, 'IdentityNotFound');
  });

  it('refuses to take over an identity whose tags name another PodIdentity', async () => {
    const { world, azure, settle } = harness();
    azure.seedIdentity(identityResourceId(SUB, 'pods', defaultIdentityName('team', 'web')), { [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: 'other', [TAG_NAME]: 'thing' });
    world.create('team', 'web', { identity: { managed: {} } });
    await settle('team/web');
    const pid = world.pids.get('team/web')!;
    assert.equal(cond(pid.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
    assert.match(cond(pid.status, 'IdentityReady')?.message ?? '', /PodIdentity other\/thing/);
    assert.equal(azure.callsOf('identities.createOrUpdate'), 0);
    assert.equal(cond(pid.status, 'Ready')?.status, 'False');
  });

  it('gives a clear LimitExceeded condition past 20 federated credentials, without writes or retries', async () => {
    const { world, azure, reconciler, settle } = harness();
    world.create('team', 'web', { identity: { managed: {} }, serviceAccounts: Array.from({ length: 21 }, (_, i) => `sa${i}`) });
    await settle('team/web');
    const pid = world.pids.get('team/web')!;
    assert.equal(cond(pid.status, 'CredentialsReady')?.reason, 'LimitExceeded');
    assert.equal(azure.callsOf('federatedCredentials.createOrUpdate'), 0);
    assert.equal(await reconciler.reconcile('team/web'), undefined, 'no requeue storm');
  });

  it('retries PrincipalNotFound with growing backoff until the principal replicates', async () => {
    const { world, azure, reconciler, settle } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    azure.principalNotFoundTimes = 2;
    const first = await reconciler.reconcile('team/web');
    assert.equal(cond(world.pids.get('team/web')!.status, 'RolesAssigned')?.reason, 'PrincipalNotReplicated');
    const second = await reconciler.reconcile('team/web');
    assert.ok(first?.requeueAfterMs && second?.requeueAfterMs && second.requeueAfterMs > first.requeueAfterMs);
    await settle('team/web');
    assert.equal(cond(world.pids.get('team/web')!.status, 'Ready')?.status, 'True');
    assert.equal(azure.assignments.size, 1);
  });

  it('requeues a throttled key after Retry-After instead of failing fast', async () => {
    const { world, azure, reconciler } = harness();
    world.create('team', 'web', { identity: { managed: {} } });
    azure.failNext('identities.get', new ThrottledError('slow down', 'identities.get', 7000));
    assert.deepEqual(await reconciler.reconcile('team/web'), { requeueAfterMs: 7000 });
    // The finalizer went out beside the plan's read (finalize leaves Azure alone when nothing is recorded as ours);
    // what the throttled read must stop is every Azure write.
    assert.equal(azure.callsOf('identities.createOrUpdate'), 0);
    // An event re-enqueues the key at once: still no Azure call until Retry-After has passed.
    const callsBefore = azure.calls.length;
    const early = await reconciler.reconcile('team/web');
    assert.ok(early && early.requeueAfterMs! > 0 && early.requeueAfterMs! <= 7000, JSON.stringify(early));
    assert.equal(azure.calls.length, callsBefore, 'no Azure call while throttled');
  });

  it('a newly created identity costs no list reads: nothing can be attached to a new principal yet', async () => {
    const { world, azure, ownership, settle } = harness();
    world.policyList = [allowAll()];
    let ownershipReads = 0;
    const scaleSetsWith = ownership.scaleSetsWith.bind(ownership);
    ownership.scaleSetsWith = (id) => (ownershipReads++, scaleSetsWith(id));
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
    await settle('team/web');
    assert.equal(cond(world.pids.get('team/web')!.status, 'Ready')?.status, 'True');
    assert.deepEqual(azure.calls.filter((c) => c !== 'roleDefinitions.resolve').sort(), ['federatedCredentials.createOrUpdate', 'identities.createOrUpdate', 'identities.get', 'roleAssignments.create']);
    assert.equal(ownershipReads, 0);
  });

  it('an identity that already exists is still read in full: stale credentials and assignments of ours are removed', async () => {
    const { world, azure, settle } = harness();
    world.policyList = [allowAll()];
    const id = identityResourceId(SUB, 'pods', defaultIdentityName('team', 'web'));
    const pid = world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
    // Created for this very PodIdentity (its uid) by an earlier reconcile that crashed before writing status.
    const identity = azure.seedIdentity(id, { [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: 'team', [TAG_NAME]: 'web', [TAG_UID]: pid.metadata.uid! });
    await azure.federatedCredentials.ensure(id, { name: federatedCredentialName('system:serviceaccount:team:old'), issuer: 'https://issuer.example', subject: 'system:serviceaccount:team:old', audiences: [] });
    await azure.roles.ensure(roleAssignmentName(identity.principalId, READER, RG('other')), RG('other'), READER, identity.principalId);
    await settle('team/web');
    assert.deepEqual(azure.fics.get(id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:team:app']);
    assert.deepEqual([...azure.assignments.values()].map((a) => a.scope), [RG('data')]);
  });

  it('assigns roles and writes federated credentials at the same time, and waits for both', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
    let ficStarted!: () => void;
    const ficStart = new Promise<void>((r) => (ficStarted = r));
    let overlapped = false;
    const ensureRole = azure.roles.ensure;
    azure.roles.ensure = async (...args) => {
      // Held until the credential write starts (bounded: a sequential reconcile would never start it meanwhile).
      for (let turn = 0; turn < 50 && !overlapped; turn++) await Promise.race([ficStart.then(() => (overlapped = true)), new Promise((r) => setImmediate(r))]);
      return ensureRole(...args);
    };
    const ensureFic = azure.federatedCredentials.ensure;
    azure.federatedCredentials.ensure = (...args) => (ficStarted(), ensureFic(...args));
    azure.failNext('federatedCredentials.createOrUpdate', new ThrottledError('slow down', 'federatedCredentials.createOrUpdate', 3000));
    assert.deepEqual(await reconciler.reconcile('team/web'), { requeueAfterMs: 3000 });
    assert.ok(overlapped, 'role assignment and credential writes overlap');
    assert.equal(azure.assignments.size, 1, 'the role step finished before the reconcile returned');
    const calls = azure.calls.length;
    await new Promise((r) => setImmediate(r));
    assert.equal(azure.calls.length, calls, 'nothing left running after the reconcile returned');
  });

  it('maps a pod to the PodIdentity its label names and to PodIdentities whose own selector matches it', async () => {
    const { world, settle } = harness();
    world.create('team', 'web', { identity: { managed: {} } });
    world.create('team', 'by-app', { identity: { managed: {} }, selector: { matchLabels: { app: 'shop' } } });
    world.create('team', 'shop', { identity: { managed: {} }, selector: { matchLabels: { tier: 'none' } } }); // named by a label, but has its own selector
    world.create('other', 'web', { identity: { managed: {} } });
    const pod = (labels: Record<string, string>) => ({ metadata: { namespace: 'team', name: 'p', labels } });
    assert.deepEqual(keysSelecting(world, pod({ 'podidentity.dev/identity': 'web' })), ['team/web']);
    assert.deepEqual(keysSelecting(world, pod({ 'podidentity.dev/identity': 'web', app: 'shop' })).sort(), ['team/by-app', 'team/web']);
    assert.deepEqual(keysSelecting(world, pod({ 'podidentity.dev/identity': 'shop' })), []);
    assert.deepEqual(keysSelecting(world, pod({ 'podidentity.dev/identity': 'missing' })), []);
    world.addPod('team', 'a', { app: 'shop' }, { serviceAccountName: 'sa-app' });
    world.addPod('team', 'b', { 'podidentity.dev/identity': 'web' }, { serviceAccountName: 'sa-web' });
    await settle('team/web', 'team/by-app');
    assert.deepEqual(world.pids.get('team/web')!.status?.federatedCredentials?.map((f) => f.subject), ['system:serviceaccount:team:sa-web']);
    assert.deepEqual(world.pids.get('team/by-app')!.status?.federatedCredentials?.map((f) => f.subject), ['system:serviceaccount:team:sa-app']);
  });

  it('reads the identity, adds the finalizer and converges in one pass', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
    assert.equal(await reconciler.reconcile('team/web'), undefined);
    const pid = world.pids.get('team/web')!;
    assert.deepEqual(pid.metadata.finalizers, [FINALIZER]);
    assert.equal(cond(pid.status, 'Ready')?.status, 'True');
    assert.equal(azure.callsOf('identities.get'), 1);
  });

  it('never acts on a cached copy older than its own last write: no Azure call, no status write', async () => {
    const { world, azure, reconciler } = harness();
    world.policyList = [allowAll()];
    world.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['app'] });
    const before = structuredClone(world.pids.get('team/web')!);
    await reconciler.reconcile('team/web');
    const live = world.pids.get('team/web')!;
    const calls = azure.calls.length;
    const patches = world.statusPatches;
    // The watch has not delivered our writes yet: the cache still holds the object as it was (or half-way).
    world.pids.set('team/web', before);
    assert.equal(await reconciler.reconcile('team/web'), undefined);
    world.pids.set('team/web', live);
    assert.equal(await reconciler.reconcile('team/web'), undefined);
    assert.equal(azure.calls.length, calls, 'no Azure call');
    assert.equal(world.statusPatches, patches, 'no status write');
    // A real change (a new generation) is acted on.
    world.updateSpec('team/web', (spec) => (spec.serviceAccounts = ['app', 'batch']));
    await reconciler.reconcile('team/web');
    assert.equal(azure.callsOf('federatedCredentials.createOrUpdate'), 2);
  });

  it('serialises federated credential writes per identity', async () => {
    const { world, azure, settle } = harness();
    world.create('team', 'web', { identity: { managed: {} }, serviceAccounts: ['a', 'b', 'c', 'd'] });
    await settle('team/web');
    assert.equal(azure.maxConcurrentFicWrites, 1);
    assert.equal(azure.fics.get(world.pids.get('team/web')!.status!.resourceId!.toLowerCase())?.length, 4);
  });
});

describe('Node mode and scale-set batching', () => {
  const ssA = scaleSetResourceId(SUB, 'mc_rg', 'pool-a');
  const ssB = scaleSetResourceId(SUB, 'mc_rg', 'pool-b');
  const foreign = identityResourceId(SUB, 'kubelet', 'agentpool');

  function nodeWorld(identities: number, podsPerIdentity: number) {
    const h = harness({ defaultMode: 'Node' });
    h.azure.seedScaleSet(ssA, [foreign], 'SystemAssigned, UserAssigned');
    h.azure.seedScaleSet(ssB);
    for (let n = 0; n < 4; n++) h.world.addNode(`node-${n}`, n % 2 ? ssB : ssA, String(n));
    const keys: string[] = [];
    for (let i = 0; i < identities; i++) {
      h.world.create('team', `id${i}`, { identity: { managed: {} } });
      keys.push(`team/id${i}`);
      for (let p = 0; p < podsPerIdentity; p++) h.world.addPod('team', `id${i}-pod${p}`, { 'podidentity.dev/identity': `id${i}` }, { nodeName: `node-${p % 4}` });
    }
    return { ...h, keys };
  }

  it('N pods of K identities across 2 scale sets give one PATCH per scale set', async () => {
    const { world, azure, settle, keys } = nodeWorld(5, 8);
    await settle(...keys);
    assert.equal(azure.callsOf('scaleSets.update'), 2, `PATCHes: ${azure.callsOf('scaleSets.update')}`);
    const a = azure.scaleSetState.get(ssA.toLowerCase())!;
    assert.equal(a.userAssigned.length, 6, 'foreign + 5');
    assert.ok(a.userAssigned.includes(foreign));
    for (const key of keys) {
      const s = world.pids.get(key)!.status!;
      assert.equal(cond(s, 'NodesAssigned')?.status, 'True', key);
      assert.equal(cond(s, 'Ready')?.status, 'True', key);
      assert.deepEqual(s.nodeAssignments?.map((n) => n.state), ['Assigned', 'Assigned']);
    }
  });

  it('unassigns when the last pod leaves a scale set, never touching identities it did not add, and survives a restart', async () => {
    const { world, azure, ownership, settle, keys } = nodeWorld(2, 2); // pods on node-0 (A) and node-1 (B)
    await settle(...keys);
    const id0 = world.pids.get('team/id0')!.status!.resourceId!;
    assert.deepEqual(await ownership.scaleSetsWith(id0).then((s) => s.sort()), [ssA, ssB].sort());
    world.removePod('team', 'id0-pod1'); // the only id0 pod on pool-b
    await settle(...keys);
    assert.equal(azure.scaleSetState.get(ssB.toLowerCase())!.userAssigned.includes(id0), false);
    assert.ok(azure.scaleSetState.get(ssA.toLowerCase())!.userAssigned.includes(id0));
    // A new process (empty batcher) sharing only the durable ownership record deletes id1 cleanly.
    const restarted = harness({ defaultMode: 'Node' });
    for (const [k, v] of azure.scaleSetState) restarted.azure.scaleSetState.set(k, v);
    for (const [k, v] of azure.identitiesById) restarted.azure.identitiesById.set(k, v);
    for (const [k, v] of ownership.entries) restarted.ownership.entries.set(k, v);
    for (const [k, v] of world.pids) restarted.world.pids.set(k, v);
    restarted.world.podList = world.podList;
    for (const [k, v] of world.nodes) restarted.world.nodes.set(k, v);
    restarted.world.delete('team/id1');
    await restarted.settle('team/id1');
    const after = restarted.azure.scaleSetState;
    const id1 = identityResourceId(SUB, 'pods', defaultIdentityName('team', 'id1'));
    assert.equal(after.get(ssA.toLowerCase())!.userAssigned.includes(id1), false);
    assert.equal(after.get(ssB.toLowerCase())!.userAssigned.includes(id1), false);
    assert.ok(after.get(ssA.toLowerCase())!.userAssigned.includes(foreign), 'foreign identity untouched');
    assert.ok(after.get(ssA.toLowerCase())!.userAssigned.includes(id0), 'id0 (not yet reconciled here) kept');
    assert.equal(restarted.world.pids.has('team/id1'), false);
  });

  it('gives LimitExceeded when a scale set would carry more than 100 identities', async () => {
    const { world, azure, settle, keys } = nodeWorld(1, 1);
    azure.seedScaleSet(ssA, Array.from({ length: 100 }, (_, i) => identityResourceId(SUB, 'x', `i${i}`)));
    await settle(...keys);
    const c = cond(world.pids.get('team/id0')!.status, 'NodesAssigned');
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'LimitExceeded');
  });
});
