/**
 * The identity step. Ownership is proved by Azure-side tags, the durable record: an identity the operator
 * created carries `podidentity-managed-by`, `-namespace`, `-name` and `-uid`. A managed identity is used,
 * modified or deleted only when its uid tag is this PodIdentity's uid; an identity the operator created for
 * another namespace is never adopted through `identity.existing`.
 */
import { CONDITION_IDENTITY_READY, FINALIZER, type PodIdentity } from '../../lib/api/types.js';
import { NotFoundError, ThrottledError } from '../azure/errors.js';
import { identityResourceId, normalizeId } from '../azure/ids.js';
import { KeyedMutex } from '../azure/mutex.js';
import type { AzureIdentity } from '../azure/types.js';
import type { StepDeps } from './deps.js';
import { defaultIdentityName, legacyIdentityName, MANAGED_BY, reservedForNamespace, TAG_MANAGED_BY, TAG_PREFIX, TAG_NAME, TAG_NAMESPACE, TAG_UID } from './names.js';
import { bad, conditionOf, errMessage, type Cond } from './status.js';

/** The outcome of looking at the identity before any write. */
export type IdentityPlan =
  | { kind: 'use'; identity: AzureIdentity; owned: boolean }
  /** `epoch`: creations of this name by this process before the read that found it free. */
  | { kind: 'create'; resourceId: string; epoch: number }
  | { kind: 'refused'; failure: Cond; requeueAfterMs?: number; error?: unknown };

/** Whether the operator created `identity` for exactly this PodIdentity (same uid, namespace and name). */
export function ownedBy(identity: AzureIdentity, pid: PodIdentity): boolean {
  const t = identity.tags;
  return t[TAG_MANAGED_BY] === MANAGED_BY && !!pid.metadata.uid && t[TAG_UID] === pid.metadata.uid && t[TAG_NAMESPACE] === pid.metadata.namespace && t[TAG_NAME] === pid.metadata.name;
}

function ownerOf(identity: AzureIdentity): string {
  const t = identity.tags;
  return t[TAG_MANAGED_BY] === MANAGED_BY ? `PodIdentity ${t[TAG_NAMESPACE]}/${t[TAG_NAME]} (uid ${t[TAG_UID] ?? 'unknown'})` : 'something other than this operator';
}

/** Where a managed identity may live, most likely first: the spec's name, or the default and the legacy default. */
export function managedCandidates(d: Pick<StepDeps, 'settings'>, pid: PodIdentity): string[] {
  const m = pid.spec.identity.managed ?? {};
  const rg = m.resourceGroup ?? d.settings.defaultResourceGroup;
  const at = (name: string) => identityResourceId(d.settings.subscriptionId, rg, name);
  if (m.name) return [at(m.name)];
  const ns = pid.metadata.namespace ?? '';
  const name = pid.metadata.name ?? '';
  const current = at(defaultIdentityName(ns, name));
  // Only a PodIdentity an operator already handled (it has the finalizer or a recorded identity) can own an
  // identity under the legacy name; a new one costs no extra read.
  if (!pid.metadata.finalizers?.includes(FINALIZER) && !pid.status?.resourceId) return [current];
  const legacy = at(legacyIdentityName(ns, name));
  // One that already uses its legacy-named identity looks there first: one GET per full sync.
  return pid.status?.resourceId && normalizeId(pid.status.resourceId) === normalizeId(legacy) ? [legacy, current] : [current, legacy];
}

async function read(d: StepDeps, resourceId: string): Promise<AzureIdentity | undefined> {
  try {
    return await d.azure.identities.get(resourceId);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** Reads only: decides whether this PodIdentity may use (or create) its identity. */
export async function planIdentity(d: StepDeps, pid: PodIdentity): Promise<IdentityPlan> {
  const ns = pid.metadata.namespace ?? '';
  try {
    const existing = pid.spec.identity.existing;
    if (existing) {
      const identity = await read(d, existing.resourceId);
      if (!identity) return { kind: 'refused', failure: bad('IdentityNotFound', `identity ${existing.resourceId} does not exist`), requeueAfterMs: 60_000 };
      if (identity.tags[TAG_MANAGED_BY] === MANAGED_BY && identity.tags[TAG_NAMESPACE] !== ns) return refuse(d, pid, identity.id, ownerOf(identity), 'it was created for another namespace');
      return { kind: 'use', identity, owned: ownedBy(identity, pid) };
    }
    const [first, ...rest] = managedCandidates(d, pid);
    const epoch = creations.get(normalizeId(first!)) ?? 0;
    const atFirst = await read(d, first!);
    if (atFirst) return ownedBy(atFirst, pid) ? { kind: 'use', identity: atFirst, owned: true } : refuse(d, pid, atFirst.id, ownerOf(atFirst), 'use identity.existing to adopt it, or choose another name');
    // Never create a name in another namespace's default-name space (one this PodIdentity already owns, made
    // before the rule, stays in use above).
    const reserved = pid.spec.identity.managed?.name ? reservedForNamespace(pid.spec.identity.managed.name) : undefined;
    if (reserved !== undefined && reserved !== ns.toLowerCase()) {
      const message = `identity.managed.name "${pid.spec.identity.managed!.name}" is in namespace "${reserved}"'s default-name space ("${reserved}_…"); a new managed identity name holding "_" must start with "${ns}_"`;
      return { kind: 'refused', failure: bad('IdentityNameReserved', message) };
    }
    for (const other of rest) {
      const found = await read(d, other);
      // A candidate we cannot prove is ours is simply not ours: never adopted, never touched.
      if (found && ownedBy(found, pid)) return { kind: 'use', identity: found, owned: true };
    }
    return { kind: 'create', resourceId: first!, epoch };
  } catch (err) {
    if (err instanceof ThrottledError) throw err;
    return { kind: 'refused', failure: bad('AzureError', errMessage(err)), error: err };
  }
}

async function refuse(d: StepDeps, pid: PodIdentity, resourceId: string, who: string, hint: string): Promise<Extract<IdentityPlan, { kind: 'refused' }>> {
  const message = `identity ${resourceId} belongs to ${who}; refusing to take it over (${hint})`;
  if (conditionOf(pid, CONDITION_IDENTITY_READY)?.reason !== 'IdentityOwnedByAnother') {
    d.logger?.warn('refusing to take over an identity', { namespace: pid.metadata.namespace, name: pid.metadata.name, resourceId, owner: who });
    d.writer.event(pid, 'Warning', 'IdentityOwnedByAnother', message);
  }
  return { kind: 'refused', failure: bad('IdentityOwnedByAnother', message) };
}

/**
 * The spec's extra tags without any in the operator's `podidentity-` space, compared case-insensitively as Azure
 * compares tag names: a user's `PodIdentity-UID` must never sit beside, or stand in for, the ownership record.
 */
function userTags(tags: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(tags ?? {}).filter(([k]) => !k.toLowerCase().startsWith(TAG_PREFIX)));
}

/**
 * Creates the planned identity, or brings an owned one's tags and location up to date. Never writes an
 * identity this PodIdentity does not own. `created`: the identity did not exist and this call made it.
 */
export async function ensureIdentity(d: StepDeps, pid: PodIdentity, plan: Exclude<IdentityPlan, { kind: 'refused' }>): Promise<{ identity: AzureIdentity; created?: boolean } | { failure: Cond; error?: unknown }> {
  if (plan.kind === 'use') return plan.owned && !pid.spec.identity.existing ? write(d, pid, plan.identity.id, plan.identity) : { identity: plan.identity };
  // A PUT on an existing identity rewrites its tags: two PodIdentities that both planned to create one name
  // would both end up using it, the second with the tags. Creations of one name run one at a time; one whose
  // read predates another's creation reads again, sees that identity and is refused.
  const key = normalizeId(plan.resourceId);
  return creating.run(key, async () => {
    let now: AzureIdentity | undefined;
    if ((creations.get(key) ?? 0) !== plan.epoch) {
      try {
        now = await read(d, plan.resourceId);
      } catch (err) {
        if (err instanceof ThrottledError) throw err;
        return { failure: bad('AzureError', errMessage(err)), error: err };
      }
    }
    if (now && !ownedBy(now, pid)) {
      return { failure: (await refuse(d, pid, now.id, ownerOf(now), 'another PodIdentity created it first; choose another name')).failure };
    }
    const written = await write(d, pid, plan.resourceId, now);
    if ('identity' in written) creations.set(key, (creations.get(key) ?? 0) + 1);
    return written;
  });
}

/** One operator process creates one identity name at a time (see ensureIdentity), and counts them. */
const creating = new KeyedMutex();
const creations = new Map<string, number>();

async function write(d: StepDeps, pid: PodIdentity, resourceId: string, current: AzureIdentity | undefined): Promise<{ identity: AzureIdentity; created?: boolean } | { failure: Cond; error?: unknown }> {
  const ns = pid.metadata.namespace ?? '';
  const name = pid.metadata.name ?? '';
  try {
    const m = pid.spec.identity.managed ?? {};
    const tags = { ...userTags(m.tags), [TAG_MANAGED_BY]: MANAGED_BY, [TAG_NAMESPACE]: ns, [TAG_NAME]: name, [TAG_UID]: pid.metadata.uid ?? '' };
    const location = m.location ?? current?.location ?? d.settings.location;
    const upToDate = current && current.location.toLowerCase() === location.toLowerCase() && Object.keys(tags).length === Object.keys(current.tags).length && Object.entries(tags).every(([k, v]) => current.tags[k] === v);
    if (current && upToDate) return { identity: current };
    const identity = await d.azure.identities.ensure(resourceId, location, tags);
    d.logger?.info(current ? 'managed identity updated' : 'managed identity created', { namespace: ns, name, clientId: identity.clientId, resourceId });
    return { identity, created: !current };
  } catch (err) {
    if (err instanceof ThrottledError) throw err;
    return { failure: bad('AzureError', errMessage(err)), error: err };
  }
}

/**
 * The identity a PodIdentity being deleted may finalise: the one its status records, else (status lost) a
 * managed candidate whose uid tag proves it is ours. Never a computed name on its own.
 */
export async function recordedIdentity(d: StepDeps, pid: PodIdentity): Promise<{ id: string; identity?: AzureIdentity; owned: boolean } | undefined> {
  const recorded = pid.status?.resourceId;
  if (recorded) {
    const identity = await read(d, recorded);
    return { id: recorded, ...(identity ? { identity } : {}), owned: !!identity && ownedBy(identity, pid) };
  }
  if (!pid.spec.identity.managed && pid.spec.identity.existing) return undefined;
  for (const candidate of managedCandidates(d, pid)) {
    const identity = await read(d, candidate);
    if (identity && ownedBy(identity, pid)) return { id: identity.id, identity, owned: true };
  }
  return undefined;
}

/** Deletes the identity, only when its tags prove this PodIdentity created it. */
export async function releaseIdentity(d: StepDeps, pid: PodIdentity, identity: AzureIdentity): Promise<void> {
  if (!ownedBy(identity, pid)) return;
  await d.azure.identities.delete(identity.id);
  d.logger?.info('managed identity deleted', { namespace: pid.metadata.namespace, name: pid.metadata.name, clientId: identity.clientId, resourceId: identity.id });
}

/**
 * Other live PodIdentities that use the identity: recorded in their status (the operator wrote it after
 * deciding they may), or named by the spec of one in the same namespace (not reconciled yet). A spec from
 * another namespace proves nothing: `identity.existing` is refused across namespaces for an identity the
 * operator created, so counting it would let any namespace pin another's identity past its deletion.
 */
export function othersUsing(d: Pick<StepDeps, 'view'>, pid: PodIdentity, identityId: string): string[] {
  const id = normalizeId(identityId);
  const me = `${pid.metadata.namespace}/${pid.metadata.name}`;
  const recorded = (o: PodIdentity) => !!o.status?.resourceId && normalizeId(o.status.resourceId) === id;
  const namedHere = (o: PodIdentity) => o.metadata.namespace === pid.metadata.namespace && !!o.spec.identity.existing && normalizeId(o.spec.identity.existing.resourceId) === id;
  return d.view
    .podIdentitiesOnIdentity(identityId)
    .filter((o) => `${o.metadata.namespace}/${o.metadata.name}` !== me && !o.metadata.deletionTimestamp)
    .filter((o) => recorded(o) || namedHere(o))
    .map((o) => `${o.metadata.namespace}/${o.metadata.name}`);
}
