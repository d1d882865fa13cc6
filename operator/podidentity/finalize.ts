/**
 * Letting go of an identity: on deletion, and when the spec moves the PodIdentity to another identity. A
 * PodIdentity releases only what it recorded as its own. The identity is the one its status records (or, with
 * status lost, a managed candidate whose uid tag proves it is ours); grants and credentials are released
 * reference-counted; the identity itself is deleted only when its tags prove this PodIdentity created it.
 */
import { FINALIZER, type PodIdentity } from '../../lib/api/types.js';
import { normalizeId } from '../azure/ids.js';
import type { AzureIdentity } from '../azure/types.js';
import { releaseCredentials } from './credentials.js';
import type { StepDeps } from './deps.js';
import { othersUsing, recordedIdentity, releaseIdentity } from './identity.js';
import { releaseRoles } from './roles.js';
import { batchRequeueMs, retainScaleSets, withdrawScaleSets } from './scalesets.js';

type Released = 'done' | { requeueAfterMs: number };

/**
 * Releases one recorded identity as `deletionPolicy` says: Retain leaves an identity this PodIdentity created as
 * it is (only scale sets no other PodIdentity needs it on stop counting as ours), and on any other identity
 * releases its credentials and grants all the same; Delete removes this PodIdentity's credentials, grants
 * and scale-set assignments, then the identity if it is ours and nobody else uses it.
 */
async function release(d: StepDeps, pid: PodIdentity, found: { id: string; identity?: AzureIdentity; owned: boolean }, why: 'deleted' | 'moved to another identity'): Promise<Released> {
  const log = { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: pid.status?.clientId, resourceId: found.id };
  if (pid.spec.deletionPolicy === 'Retain') {
    // Retain keeps what is this PodIdentity's own. On an identity it did not create (identity.existing, perhaps
    // shared with other namespaces) its credentials and grants would otherwise outlive every PodIdentity that
    // could account for them: no later policy revocation could reach them, and the namespace's service accounts
    // could keep exchanging their tokens for that identity directly with Azure AD.
    if (!found.owned) {
      if (found.identity) await releaseCredentials(d, pid, found.id);
      const principalId = found.identity?.principalId ?? pid.status?.principalId;
      if (principalId) await releaseRoles(d, pid, { identityId: found.id, ...(found.identity ? { identityTags: found.identity.tags } : {}), principalId, owned: false, reason: 'deletion' });
    }
    await retainScaleSets(d, pid, found.id);
    d.logger?.info(`PodIdentity ${why}; Azure resources retained`, log);
    return 'done';
  }
  if (found.identity) await releaseCredentials(d, pid, found.id);
  // Role assignments outlive a deleted principal in Azure, so the recorded principal counts too.
  const principalId = found.identity?.principalId ?? pid.status?.principalId;
  if (principalId) await releaseRoles(d, pid, { identityId: found.id, ...(found.identity ? { identityTags: found.identity.tags } : {}), principalId, owned: found.owned, reason: 'deletion' });
  if ((await withdrawScaleSets(d, pid, found.id, { ownershipRecord: true })).length) return { requeueAfterMs: batchRequeueMs(d) };
  const users = found.identity ? othersUsing(d, pid, found.id) : [];
  if (users.length) d.logger?.warn(`PodIdentity ${why}; its identity is kept while other PodIdentities use it`, { ...log, usedBy: users });
  else if (found.identity) await releaseIdentity(d, pid, found.identity);
  return 'done';
}

/** 'done' once the finalizer is gone; a requeue while scale sets are still being emptied. */
export async function finalize(d: StepDeps, pid: PodIdentity): Promise<Released | undefined> {
  if (!pid.metadata.finalizers?.includes(FINALIZER)) return undefined;
  const found = await recordedIdentity(d, pid);
  if (!found) d.logger?.info('PodIdentity deleted; no identity recorded as its own, Azure left alone', { namespace: pid.metadata.namespace, name: pid.metadata.name });
  else {
    const released = await release(d, pid, found, 'deleted');
    if (released !== 'done') return released;
  }
  await d.writer.removeFinalizer(pid, FINALIZER);
  return 'done';
}

/**
 * When the spec moved the PodIdentity to another identity (`nextId`), the one its status records is let go
 * first, exactly as a deletion would. Otherwise its credentials and grants would stay behind on an identity
 * the PodIdentity no longer names: out of reach of every later spec change, policy revocation and deletion,
 * and still usable by the namespace's service accounts. Undefined once nothing recorded is left to release.
 */
export async function releaseReplaced(d: StepDeps, pid: PodIdentity, nextId: string): Promise<{ requeueAfterMs: number } | undefined> {
  const recorded = pid.status?.resourceId;
  if (!recorded || normalizeId(recorded) === normalizeId(nextId)) return undefined;
  const found = await recordedIdentity(d, pid);
  if (!found) return undefined;
  const released = await release(d, pid, found, 'moved to another identity');
  return released === 'done' ? undefined : released;
}
