/**
 * Issue 11 item 4: one namespace must never damage another's identity. Each test is named after the attack it
 * stops.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FINALIZER, type Condition, type PodIdentityPolicy } from '../../lib/api/types.js';
import { identityResourceId } from '../azure/ids.js';
import { legacyIdentityName, MANAGED_BY, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID } from './names.js';
import { harness, namespacePolicy, SUB } from '../testing/podidentity-harness.js';

const OTHER_SUB = '00000000-0000-4000-8000-0000000000ff';
const RG = (n: string, sub = SUB) => `/subscriptions/${sub}/resourceGroups/${n}`;
const policy = (name: string, namespaces: string[] | undefined, spec: Partial<PodIdentityPolicy['spec']> = {}): PodIdentityPolicy =>
  namespacePolicy(name, namespaces, { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [RG('data'), RG('data', OTHER_SUB)], allowedExistingIdentities: ['/**'], ...spec });
const cond = (status: { conditions?: Condition[] } | undefined, type: string) => status?.conditions?.find((c) => c.type === type);

function world() {
  const h = harness();
  for (const ns of ['a', 'a-b', 'b', 'victim', 'attacker', 'team']) h.world.namespaces.set(ns, { 'kubernetes.io/metadata.name': ns });
  h.world.policyList = [policy('all', undefined)];
  return h;
}

describe('one namespace cannot damage another namespace\'s identity', () => {
  it('deleting a refused PodIdentity (managed.name set to another namespace\'s identity) leaves the victim\'s grants, credentials and Ready intact', async () => {
    const { world: w, azure, settle } = world();
    // A name without "_" (outside any namespace's default-name space), so the tags are what refuses it.
    w.create('victim', 'web', { identity: { managed: { name: 'victim-web-identity' } }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['web'] });
    await settle('victim/web');
    const victim = w.pids.get('victim/web')!.status!;
    const victimName = victim.resourceId!.split('/').pop()!;
    assert.equal(azure.assignments.size, 1);

    w.create('attacker', 'steal', { identity: { managed: { name: victimName } } });
    await settle('attacker/steal');
    const refused = w.pids.get('attacker/steal')!;
    assert.equal(cond(refused.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
    // The finalizer goes out beside the ownership check (both before any Azure write), so a refused PodIdentity
    // carries it: its deletion must still complete without touching what the check refused.
    assert.equal(azure.callsOf('identities.createOrUpdate'), 1, 'only the victim\'s identity was ever written');

    w.delete('attacker/steal');
    await settle('attacker/steal');
    await settle('victim/web');
    assert.equal(w.pids.has('attacker/steal'), false);
    assert.equal(azure.assignments.size, 1, 'victim\'s role assignment intact');
    assert.equal(azure.fics.get(victim.resourceId!.toLowerCase())?.length, 1, 'victim\'s federated credential intact');
    assert.ok(azure.identitiesById.has(victim.resourceId!.toLowerCase()), 'victim\'s identity intact');
    assert.equal(cond(w.pids.get('victim/web')!.status, 'Ready')?.status, 'True');
    assert.equal(azure.callsOf('roleAssignments.delete'), 0);
  });

  it('deleting a refused PodIdentity that was given a finalizer by an older operator never falls back to a computed name', async () => {
    const { world: w, azure, settle } = world();
    w.create('victim', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    await settle('victim/web');
    const victimName = w.pids.get('victim/web')!.status!.resourceId!.split('/').pop()!;
    const legacy = w.create('attacker', 'steal', { identity: { managed: { name: victimName } } });
    legacy.metadata.finalizers = [FINALIZER]; // as an older operator added it before checking ownership
    w.delete('attacker/steal');
    await settle('attacker/steal');
    assert.equal(w.pids.has('attacker/steal'), false);
    assert.equal(azure.assignments.size, 1);
    assert.equal(azure.identitiesById.size, 1);
  });

  it('name collision a/b-web vs a-b/web: both get identities of their own and deleting one leaves the other intact', async () => {
    const { world: w, azure, settle } = world();
    w.create('a-b', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    w.create('a', 'b-web', { identity: { managed: {} }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('a-b/web', 'a/b-web');
    const one = w.pids.get('a-b/web')!.status!;
    const two = w.pids.get('a/b-web')!.status!;
    assert.equal(cond(one, 'Ready')?.status, 'True');
    assert.equal(cond(two, 'Ready')?.status, 'True');
    assert.notEqual(one.resourceId?.toLowerCase(), two.resourceId?.toLowerCase());
    w.delete('a/b-web');
    await settle('a/b-web', 'a-b/web');
    assert.ok(azure.identitiesById.has(one.resourceId!.toLowerCase()));
    assert.deepEqual([...azure.assignments.values()].map((r) => r.principalId), [one.principalId]);
  });

  it('a retained identity is not silently re-adopted by a new PodIdentity (different uid) reusing the namespace and name', async () => {
    const { world: w, azure, settle } = world();
    w.create('team', 'web', { identity: { managed: {} }, deletionPolicy: 'Retain' });
    await settle('team/web');
    const retained = w.pids.get('team/web')!.status!.resourceId!;
    w.delete('team/web');
    await settle('team/web');
    w.create('team', 'web', { identity: { managed: {} } });
    await settle('team/web');
    const again = w.pids.get('team/web')!;
    assert.equal(cond(again.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
    assert.equal(again.status?.clientId, undefined);
    w.delete('team/web');
    await settle('team/web');
    assert.equal(w.pids.has('team/web'), false, 'deleting the refused PodIdentity completes');
    assert.ok(azure.identitiesById.has(retained.toLowerCase()), 'the retained identity survives');
  });

  it('an identity the operator created for one namespace cannot be taken over through identity.existing from another namespace', async () => {
    const { world: w, azure, settle } = world();
    w.create('victim', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    await settle('victim/web');
    const id = w.pids.get('victim/web')!.status!.resourceId!;
    w.create('attacker', 'thief', { identity: { existing: { resourceId: id } }, serviceAccounts: ['thief'], roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('attacker/thief');
    const thief = w.pids.get('attacker/thief')!;
    assert.equal(cond(thief.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
    assert.equal(thief.status?.clientId, undefined, 'the victim\'s clientId is not handed out');
    assert.ok(!(azure.fics.get(id.toLowerCase()) ?? []).some((f) => f.subject.startsWith('system:serviceaccount:attacker:')), 'no credential for the attacker\'s service account');
    assert.equal(azure.assignments.size, 1, 'no grant added to the victim\'s identity');
    w.delete('attacker/thief');
    await settle('attacker/thief', 'victim/web');
    assert.equal(azure.assignments.size, 1);
    assert.equal(cond(w.pids.get('victim/web')!.status, 'Ready')?.status, 'True');
  });

  it('shared identities delete each other\'s grants: two namespaces on one existing identity keep their own grants, no flapping, deleting one leaves the other intact', async () => {
    const { world: w, azure, settle } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    w.create('a', 'one', { identity: { existing: { resourceId: shared.id } }, roleAssignments: [{ role: 'Reader', scope: RG('data') }], serviceAccounts: ['one'] });
    w.create('b', 'two', { identity: { existing: { resourceId: shared.id } }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }, { role: 'Reader', scope: RG('data') }], serviceAccounts: ['two'] });
    await settle('a/one', 'b/two');
    await settle('a/one', 'b/two');
    assert.equal(azure.assignments.size, 2, 'Reader (shared by both) and Contributor');
    assert.equal(azure.fics.get(shared.id.toLowerCase())?.length, 2);
    assert.equal(azure.callsOf('roleAssignments.delete'), 0, 'no flapping');
    assert.equal(azure.callsOf('federatedCredentials.delete'), 0, 'no flapping');
    for (const k of ['a/one', 'b/two']) assert.equal(cond(w.pids.get(k)!.status, 'Ready')?.status, 'True', k);

    w.delete('a/one');
    await settle('a/one', 'b/two');
    assert.equal(azure.assignments.size, 2, 'b/two still holds Reader and Contributor');
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:b:two']);
    assert.equal(cond(w.pids.get('b/two')!.status, 'Ready')?.status, 'True');
    w.delete('b/two');
    await settle('b/two');
    assert.equal(azure.assignments.size, 0);
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase()), []);
  });

  it('shared identities delete each other\'s credentials: two PodIdentities of one namespace on one identity keep each other\'s service accounts', async () => {
    const { world: w, azure, settle } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    w.create('team', 'one', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['one'] });
    w.create('team', 'two', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['two'] });
    await settle('team/one', 'team/two');
    await settle('team/one', 'team/two');
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase())?.map((f) => f.subject).sort(), ['system:serviceaccount:team:one', 'system:serviceaccount:team:two']);
    assert.equal(azure.callsOf('federatedCredentials.delete'), 0, 'no flapping');
    w.delete('team/one');
    await settle('team/one', 'team/two');
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:team:two']);
  });

  it('the wrong subscription: role cleanup covers every subscription the PodIdentity has grants in', async () => {
    const { world: w, azure, settle } = world();
    w.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data', OTHER_SUB) }, { role: 'Reader', scope: RG('data') }] });
    await settle('team/web');
    assert.equal(azure.assignments.size, 2);
    w.updateSpec('team/web', (s) => (s.roleAssignments = [{ role: 'Reader', scope: RG('data') }]));
    await settle('team/web');
    assert.deepEqual([...azure.assignments.values()].map((r) => r.scope), [RG('data')], 'removed from the spec: removed in the other subscription too');
    w.updateSpec('team/web', (s) => (s.roleAssignments = [{ role: 'Reader', scope: RG('data', OTHER_SUB) }]));
    await settle('team/web');
    w.delete('team/web');
    await settle('team/web');
    assert.equal(azure.assignments.size, 0, 'deletion covers the other subscription');
  });
});

describe('Node mode: a shared identity', () => {
  it('shared identities in Node mode: deleting one PodIdentity neither strips the other\'s scale-set assignment nor waits for ever', async () => {
    const h = harness({ defaultMode: 'Node' });
    for (const ns of ['a', 'b']) h.world.namespaces.set(ns, {});
    h.world.policyList = [policy('all', undefined)];
    const ss = `/subscriptions/${SUB}/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool`;
    h.azure.seedScaleSet(ss);
    h.world.addNode('node-0', ss);
    const shared = h.azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    h.world.create('a', 'one', { identity: { existing: { resourceId: shared.id } } });
    h.world.create('b', 'two', { identity: { existing: { resourceId: shared.id } } });
    h.world.addPod('a', 'p1', { 'podidentity.dev/identity': 'one' }, { nodeName: 'node-0' });
    h.world.addPod('b', 'p2', { 'podidentity.dev/identity': 'two' }, { nodeName: 'node-0' });
    await h.settle('a/one', 'b/two');
    assert.deepEqual(h.azure.scaleSetState.get(ss.toLowerCase())?.userAssigned, [shared.id]);
    h.world.delete('a/one');
    await h.settle('a/one', 'b/two'); // throws 'did not settle' if the deletion waited for ever
    assert.equal(h.world.pids.has('a/one'), false);
    assert.deepEqual(h.azure.scaleSetState.get(ss.toLowerCase())?.userAssigned, [shared.id], 'b/two still has it');
    assert.equal(cond(h.world.pids.get('b/two')!.status, 'Ready')?.status, 'True');
    h.world.delete('b/two');
    await h.settle('b/two');
    assert.deepEqual(h.azure.scaleSetState.get(ss.toLowerCase())?.userAssigned, []);
  });
});

describe('cancellation', () => {
  it('a reconcile whose signal has aborted (shutdown deadline) makes no Azure call', async () => {
    const { world: w, azure, reconciler } = world();
    w.create('team', 'web', { identity: { managed: {} } });
    const controller = new AbortController();
    controller.abort(new Error('shutdown deadline'));
    await assert.rejects(reconciler.reconcile('team/web', controller.signal), /shutdown deadline/);
    assert.deepEqual(azure.calls, []);
  });

  it('an Azure call in flight when the signal aborts stops being awaited', async () => {
    const { world: w, azure, reconciler } = world();
    w.create('team', 'web', { identity: { managed: {} } });
    const controller = new AbortController();
    azure.identities.get = () => new Promise(() => controller.abort(new Error('shutdown deadline'))); // never answers
    await assert.rejects(reconciler.reconcile('team/web', controller.signal), /shutdown deadline/);
  });
});

describe('identities shared within a namespace, and the legacy name', () => {
  it('deleting the PodIdentity that created an identity keeps it while another PodIdentity adopted it through identity.existing', async () => {
    const { world: w, azure, settle } = world();
    w.create('team', 'owner', { identity: { managed: {} }, serviceAccounts: ['owner'] });
    await settle('team/owner');
    const id = w.pids.get('team/owner')!.status!.resourceId!;
    w.create('team', 'user', { identity: { existing: { resourceId: id } }, serviceAccounts: ['user'], roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    await settle('team/user');
    w.delete('team/owner');
    await settle('team/owner', 'team/user');
    assert.equal(w.pids.has('team/owner'), false);
    assert.ok(azure.identitiesById.has(id.toLowerCase()), 'kept while team/user uses it');
    assert.deepEqual(azure.fics.get(id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:team:user']);
    assert.equal(azure.assignments.size, 1);
    assert.equal(cond(w.pids.get('team/user')!.status, 'Ready')?.status, 'True');
  });

  it('an identity under the legacy name <namespace>-<name> is used by the PodIdentity its uid tag names, and by no other', async () => {
    const { world: w, azure, settle } = world();
    const pid = w.create('team', 'web', { identity: { managed: {} } });
    pid.metadata.finalizers = [FINALIZER]; // handled by an older operator
    const legacy = azure.seedIdentity(identityResourceId(SUB, 'pods', legacyIdentityName('team', 'web')), { [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: 'team', [TAG_NAME]: 'web', [TAG_UID]: pid.metadata.uid! });
    pid.status = { resourceId: legacy.id, clientId: legacy.clientId };
    await settle('team/web');
    assert.equal(w.pids.get('team/web')!.status?.clientId, legacy.clientId, 'kept its identity across the upgrade');
    assert.equal(azure.identitiesById.size, 1, 'nothing created under the new name');

    // Another PodIdentity of the same name (another uid) never adopts it, and its deletion never touches it.
    w.create('team', 'api', { identity: { managed: {} } });
    const stranger = azure.seedIdentity(identityResourceId(SUB, 'pods', legacyIdentityName('team', 'api')), { [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: 'team', [TAG_NAME]: 'api', [TAG_UID]: 'someone-else' });
    w.pids.get('team/api')!.metadata.finalizers = [FINALIZER];
    await settle('team/api');
    assert.notEqual(w.pids.get('team/api')!.status?.clientId, stranger.clientId);
    w.delete('team/api');
    await settle('team/api');
    assert.ok(azure.identitiesById.has(stranger.id.toLowerCase()));
  });
});
