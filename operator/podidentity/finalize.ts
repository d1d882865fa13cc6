/**
 * Deletion: a PodIdentity finalises only what it recorded as its own. The identity is the one its status
 * records (or, with status lost, a managed candidate whose uid tag proves it is ours); grants and credentials
 * are released reference-counted; the identity itself is deleted only when its tags prove this PodIdentity
 * created it.
 */
import { FINALIZER, type PodIdentity } from '../../lib/api/types.js';
import { releaseCredentials } from './credentials.js';
import type { StepDeps } from './deps.js';
import { othersUsing, recordedIdentity, releaseIdentity } from './identity.js';
import { releaseRoles } from './roles.js';
import { batchRequeueMs, disownScaleSets, withdrawScaleSets } from './scalesets.js';

/** 'done' once the finalizer is gone; a requeue while scale sets are still being emptied. */
export async function finalize(d: StepDeps, pid: PodIdentity): Promise<'done' | { requeueAfterMs: number } | undefined> {
  if (!pid.metadata.finalizers?.includes(FINALIZER)) return undefined;
  const log = { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: pid.status?.clientId };
  const found = await recordedIdentity(d, pid);
  if (!found) d.logger?.info('PodIdentity deleted; no identity recorded as its own, Azure left alone', log);
  else if (pid.spec.deletionPolicy === 'Retain') {
    await disownScaleSets(d, found.id);
    d.logger?.info('PodIdentity deleted; Azure resources retained', log);
  } else {
    if (found.identity) await releaseCredentials(d, pid, found.id);
    // Role assignments outlive a deleted principal in Azure, so the recorded principal counts too.
    const principalId = found.identity?.principalId ?? pid.status?.principalId;
    if (principalId) await releaseRoles(d, pid, { identityId: found.id, principalId, owned: found.owned, reason: 'deletion' });
    if ((await withdrawScaleSets(d, pid, found.id, { ownershipRecord: true })).length) return { requeueAfterMs: batchRequeueMs(d) };
    const users = found.identity ? othersUsing(d, pid, found.id) : [];
    if (users.length) d.logger?.warn('PodIdentity deleted; its identity is kept while other PodIdentities use it', { ...log, usedBy: users });
    else if (found.identity) await releaseIdentity(d, pid, found.identity);
  }
  await d.writer.removeFinalizer(pid, FINALIZER);
  return 'done';
}
