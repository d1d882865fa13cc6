/**
 * Issue 11 item 4, second pass: attacks by a user who controls one namespace (creates, edits and deletes
 * PodIdentities there, but cannot write their status) on another namespace's identity, credentials, grants and
 * scale-set assignments. Each test is named after the attack it stops.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Condition, type PodIdentityPolicy } from '../../lib/api/types.js';
import { identityResourceId } from '../azure/ids.js';
import { defaultIdentityName, federatedCredentialName, serviceAccountSubject } from './names.js';
import { harness, namespacePolicy, SUB } from '../testing/podidentity-harness.js';

const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;
const policy = (name: string, namespaces: string[] | undefined, spec: Partial<PodIdentityPolicy['spec']> = {}): PodIdentityPolicy =>
  namespacePolicy(name, namespaces, { allowedRoles: ['Reader', 'Contributor'], allowedScopes: [RG('data')], allowedExistingIdentities: ['/**'], ...spec });
const cond = (status: { conditions?: Condition[] } | undefined, type: string) => status?.conditions?.find((c) => c.type === type);

function world(settings: Parameters<typeof harness>[0] = {}) {
  const h = harness(settings);
  for (const ns of ['victim', 'attacker', 'team']) h.world.namespaces.set(ns, { 'kubernetes.io/metadata.name': ns });
  h.world.policyList = [policy('all', undefined)];
  return h;
}

describe('cross-namespace attacks by a namespace user', () => {
  it('a refused identity.existing naming another namespace\'s identity does not keep that identity alive after its owner is deleted, nor lock the owner out when it comes back', async () => {
    const { world: w, azure, settle } = world();
    w.create('victim', 'web', { identity: { managed: {} } });
    await settle('victim/web');
    const id = w.pids.get('victim/web')!.status!.resourceId!;
    w.create('attacker', 'pin', { identity: { existing: { resourceId: id } } });
    await settle('attacker/pin');
    assert.equal(cond(w.pids.get('attacker/pin')!.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');

    w.delete('victim/web');
    await settle('victim/web');
    assert.equal(azure.identitiesById.has(id.toLowerCase()), false, 'deleted with its owner: a refused reference from another namespace is no use');
    w.create('victim', 'web', { identity: { managed: {} } });
    await settle('victim/web');
    assert.equal(cond(w.pids.get('victim/web')!.status, 'Ready')?.status, 'True', 'the owner, re-created, gets an identity again');
  });

  for (const squat of ['victim_web', 'Victim_web', 'VICTIM_Web']) {
    it(`squatting another namespace's default identity name (managed.name ${squat}) is refused, and the victim still gets its identity`, async () => {
      const { world: w, azure, settle } = world();
      w.create('attacker', 'squat', { identity: { managed: { name: squat } } });
      await settle('attacker/squat');
      const squatter = w.pids.get('attacker/squat')!;
      assert.notEqual(cond(squatter.status, 'Ready')?.status, 'True');
      assert.equal(squatter.status?.clientId, undefined);
      assert.equal(azure.identitiesById.size, 0, 'nothing created under the other namespace\'s name');

      w.create('victim', 'web', { identity: { managed: {} } });
      await settle('victim/web');
      assert.equal(cond(w.pids.get('victim/web')!.status, 'Ready')?.status, 'True');
      assert.equal(w.pids.get('victim/web')!.status!.resourceId!.split('/').pop(), defaultIdentityName('victim', 'web'));
    });
  }

  it('a managed.name inside the namespace\'s own default-name space is still allowed', async () => {
    const { world: w, settle } = world();
    w.create('team', 'web', { identity: { managed: { name: 'team_frontend' } } });
    await settle('team/web');
    assert.equal(cond(w.pids.get('team/web')!.status, 'Ready')?.status, 'True');
  });

  it('switching identity leaves credentials and grants on the old identity: after moving off a shared identity, nothing of this PodIdentity stays on it for a later policy change to miss', async () => {
    const { world: w, azure, settle } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    w.create('attacker', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('attacker/web');
    assert.equal(azure.fics.get(shared.id.toLowerCase())?.length, 1);
    assert.equal(azure.assignments.size, 1);

    w.updateSpec('attacker/web', (s) => (s.identity = { managed: {} }));
    await settle('attacker/web');
    const now = w.pids.get('attacker/web')!.status!;
    assert.notEqual(now.resourceId?.toLowerCase(), shared.id.toLowerCase());
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase()), [], 'the attacker\'s service account can no longer exchange for the shared identity');
    assert.deepEqual([...azure.assignments.values()].map((r) => r.principalId), [now.principalId], 'no grant left on the shared principal');
  });

  it('switching identity orphans the managed identity it created: moving to another identity deletes the old one (deletionPolicy Delete)', async () => {
    const { world: w, azure, settle } = world();
    w.create('team', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    await settle('team/web');
    const old = w.pids.get('team/web')!.status!.resourceId!;
    w.updateSpec('team/web', (s) => (s.identity = { managed: { name: 'team_other' } }));
    await settle('team/web');
    assert.equal(azure.identitiesById.has(old.toLowerCase()), false);
    assert.equal(azure.assignments.size, 1);
  });

  it('switching identity while another namespace shares the old one leaves the other\'s grants and credentials intact', async () => {
    const { world: w, azure, settle } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    w.create('victim', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    w.create('attacker', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    await settle('victim/web', 'attacker/web');
    w.updateSpec('attacker/web', (s) => (s.identity = { managed: {} }));
    await settle('attacker/web', 'victim/web');
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:victim:web']);
    assert.ok([...azure.assignments.values()].some((r) => r.principalId === shared.principalId), 'the victim\'s Reader grant stays');
    assert.equal(cond(w.pids.get('victim/web')!.status, 'Ready')?.status, 'True');
  });
});

describe('Node mode: Retain on a shared identity', () => {
  it('deleting with Retain a PodIdentity that shares an identity with another namespace does not disown the other\'s scale-set assignments', async () => {
    const h = world({ defaultMode: 'Node' });
    const ss = `/subscriptions/${SUB}/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool`;
    h.azure.seedScaleSet(ss);
    h.world.addNode('node-0', ss);
    const shared = h.azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    h.world.create('attacker', 'one', { identity: { existing: { resourceId: shared.id } }, deletionPolicy: 'Retain' });
    h.world.create('victim', 'two', { identity: { existing: { resourceId: shared.id } } });
    h.world.addPod('attacker', 'p1', { 'podidentity.dev/identity': 'one' }, { nodeName: 'node-0' });
    h.world.addPod('victim', 'p2', { 'podidentity.dev/identity': 'two' }, { nodeName: 'node-0' });
    await h.settle('attacker/one', 'victim/two');
    h.world.delete('attacker/one');
    await h.settle('attacker/one', 'victim/two');
    assert.deepEqual(h.azure.scaleSetState.get(ss.toLowerCase())?.userAssigned, [shared.id]);
    // The victim's pod leaves the node: the victim's identity must leave the scale set with it.
    h.world.removePod('victim', 'p2');
    h.world.removePod('attacker', 'p1');
    await h.settle('victim/two');
    assert.deepEqual(h.azure.scaleSetState.get(ss.toLowerCase())?.userAssigned, [], 'still recorded as the operator\'s, so removed');
  });
});

describe('federated credential names', () => {
  it('a federated-credential name collision (40-bit hash, brute-forced through the service-account name) never overwrites another namespace\'s credential on a shared identity', async () => {
    const { world: w, azure, settle } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    // The victim's credential happens to carry the name the attacker's service account computes to.
    const victimCredential = { name: federatedCredentialName(serviceAccountSubject('attacker', 'web')), issuer: 'https://issuer.example', subject: serviceAccountSubject('victim', 'web'), audiences: ['api://AzureADTokenExchange'] };
    azure.fics.set(shared.id.toLowerCase(), [victimCredential]);
    w.create('attacker', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'] });
    await settle('attacker/web').catch(() => undefined);
    assert.deepEqual(azure.fics.get(shared.id.toLowerCase()), [victimCredential], 'the victim\'s credential is untouched');
    const status = w.pids.get('attacker/web')!.status;
    assert.equal(cond(status, 'CredentialsReady')?.status, 'False');
    assert.match(cond(status, 'CredentialsReady')?.message ?? '', /system:serviceaccount:victim:web/);
  });
});

describe('ownership tags', () => {
  it('spoofing ownership tags through managed.tags in another letter case (Azure tag names are case-insensitive) is dropped: only the operator\'s own ownership tags reach Azure', async () => {
    const { world: w, azure, settle } = world();
    w.create('attacker', 'web', { identity: { managed: { tags: { 'PodIdentity-Namespace': 'victim', 'PODIDENTITY-UID': 'uid-victim-web-1', 'Podidentity-Managed-By': 'someone-else', 'podidentity-extra': 'x', team: 'storefront' } } } });
    await settle('attacker/web');
    const id = w.pids.get('attacker/web')!.status!.resourceId!;
    const tags = azure.identitiesById.get(id.toLowerCase())!.tags;
    assert.deepEqual(Object.keys(tags).filter((k) => k.toLowerCase().startsWith('podidentity-')).sort(), ['podidentity-managed-by', 'podidentity-name', 'podidentity-namespace', 'podidentity-uid']);
    assert.equal(tags['podidentity-namespace'], 'attacker');
    assert.equal(tags.team, 'storefront', 'other tags are kept');
  });
});

describe('shared identities: the window before the other PodIdentity records its grant', () => {
  it('removing a role from one PodIdentity while another namespace\'s PodIdentity on the same identity has just ensured it (status not yet written) does not strip the other\'s grant', async () => {
    const { world: w, azure, settle, reconciler } = world();
    const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
    w.create('attacker', 'one', { identity: { existing: { resourceId: shared.id } }, roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
    w.create('victim', 'two', { identity: { existing: { resourceId: shared.id } } });
    await settle('attacker/one', 'victim/two');
    assert.equal(azure.assignments.size, 1);

    // The victim asks for the same grant; between its PUT (409: already there) and its status write, the attacker
    // drops the grant from its own spec and reconciles.
    w.updateSpec('victim/two', (s) => (s.roleAssignments = [{ role: 'Reader', scope: RG('data') }]));
    w.updateSpec('attacker/one', (s) => (s.roleAssignments = []));
    const ensure = azure.roles.ensure.bind(azure.roles);
    let interleaved = false;
    azure.roles.ensure = async (...args) => {
      const created = await ensure(...args);
      if (!interleaved) {
        interleaved = true;
        await reconciler.reconcile('attacker/one');
      }
      return created;
    };
    await reconciler.reconcile('victim/two');
    azure.roles.ensure = ensure;
    const victim = w.pids.get('victim/two')!.status!;
    assert.equal(victim.roleAssignments?.[0]?.state, 'Assigned');
    assert.equal(azure.assignments.size, 1, 'the grant the victim\'s status says is Assigned exists');
  });

  it('a refused PodIdentity naming another namespace\'s identity claims nothing: the owner can still remove its own grant', async () => {
    const { world: w, azure, settle } = world();
    w.create('victim', 'web', { identity: { managed: {} }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('victim/web');
    const id = w.pids.get('victim/web')!.status!.resourceId!;
    w.create('attacker', 'pin', { identity: { existing: { resourceId: id } }, roleAssignments: [{ role: 'Contributor', scope: RG('data') }] });
    await settle('attacker/pin');
    w.updateSpec('victim/web', (s) => (s.roleAssignments = []));
    await settle('victim/web');
    assert.equal(azure.assignments.size, 0, 'the victim\'s identity does not keep a grant it dropped');
  });
});

describe('racing creations', () => {
  it('two namespaces racing to create one managed name: the second PUT never rewrites the first\'s ownership tags (one is Ready, the other refused)', async () => {
    const { world: w, azure, settle, reconciler } = world();
    w.create('victim', 'web', { identity: { managed: { name: 'storefront-identity' } } });
    w.create('attacker', 'web', { identity: { managed: { name: 'storefront-identity' } } });
    await Promise.all([reconciler.reconcile('victim/web'), reconciler.reconcile('attacker/web')]);
    await settle('victim/web', 'attacker/web');
    const ready = ['victim/web', 'attacker/web'].filter((k) => cond(w.pids.get(k)!.status, 'Ready')?.status === 'True');
    assert.equal(ready.length, 1, `exactly one owns it, got ${ready.join(', ') || 'none'}`);
    const owner = w.pids.get(ready[0]!)!;
    const identity = [...azure.identitiesById.values()][0]!;
    assert.equal(identity.tags['podidentity-uid'], owner.metadata.uid, 'the tags name the PodIdentity that uses it');
    const loser = ['victim/web', 'attacker/web'].find((k) => k !== ready[0])!;
    assert.equal(cond(w.pids.get(loser)!.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
    assert.equal(w.pids.get(loser)!.status?.clientId, undefined);
  });
});

describe('deletionPolicy Retain on an identity the PodIdentity did not create', () => {
  for (const how of ['deleted', 'moved to another identity'] as const) {
    it(`Retain on a shared identity (${how}) does not leave the namespace's credential and grants behind, out of every later policy revocation's reach`, async () => {
      const { world: w, azure, settle } = world();
      const shared = azure.seedIdentity(identityResourceId(SUB, 'shared', 'common'));
      w.create('victim', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Reader', scope: RG('data') }] });
      w.create('attacker', 'web', { identity: { existing: { resourceId: shared.id } }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Contributor', scope: RG('data') }], deletionPolicy: 'Retain' });
      await settle('victim/web', 'attacker/web');
      assert.equal(azure.assignments.size, 2);
      if (how === 'deleted') w.delete('attacker/web');
      else w.updateSpec('attacker/web', (s) => (s.identity = { managed: {} }));
      await settle('attacker/web', 'victim/web');
      assert.deepEqual(azure.fics.get(shared.id.toLowerCase())?.map((f) => f.subject), ['system:serviceaccount:victim:web'], 'no credential of the attacker\'s service account stays on the shared identity');
      assert.deepEqual([...azure.assignments.values()].filter((r) => r.principalId === shared.principalId).map((r) => r.roleDefinitionId.split('/').pop()), ['acdd72a7-3385-48ef-bd42-f606fba81ae7'], 'only the victim\'s Reader stays on the shared principal');
      assert.ok(azure.identitiesById.has(shared.id.toLowerCase()));
    });
  }

  it('Retain on an identity the PodIdentity created keeps it, its grants and credentials', async () => {
    const { world: w, azure, settle } = world();
    w.create('team', 'web', { identity: { managed: {} }, serviceAccounts: ['web'], roleAssignments: [{ role: 'Reader', scope: RG('data') }], deletionPolicy: 'Retain' });
    await settle('team/web');
    const id = w.pids.get('team/web')!.status!.resourceId!;
    w.delete('team/web');
    await settle('team/web');
    assert.ok(azure.identitiesById.has(id.toLowerCase()));
    assert.equal(azure.fics.get(id.toLowerCase())?.length, 1);
    assert.equal(azure.assignments.size, 1);
  });
});

describe('the default-name rule on upgrade', () => {
  it('an identity created before the rule under a name in another namespace\'s space keeps being used by the PodIdentity its uid tag names, and by no other', async () => {
    const { world: w, azure, settle } = world();
    const pid = w.create('team', 'web', { identity: { managed: { name: 'payments_api' } } });
    const mine = azure.seedIdentity(identityResourceId(SUB, 'pods', 'payments_api'), { 'podidentity-managed-by': 'podidentity-operator', 'podidentity-namespace': 'team', 'podidentity-name': 'web', 'podidentity-uid': pid.metadata.uid! });
    await settle('team/web');
    assert.equal(cond(w.pids.get('team/web')!.status, 'Ready')?.status, 'True');
    assert.equal(w.pids.get('team/web')!.status?.clientId, mine.clientId);
    w.create('attacker', 'web', { identity: { managed: { name: 'payments_api' } } });
    await settle('attacker/web');
    assert.equal(cond(w.pids.get('attacker/web')!.status, 'IdentityReady')?.reason, 'IdentityOwnedByAnother');
  });
});
