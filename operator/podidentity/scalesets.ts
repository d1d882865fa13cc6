/**
 * The scale-set step (Node mode). Reconciles only register demands with the batcher, which sends one PATCH per
 * scale set per window and removes only identities it recorded adding; an identity another PodIdentity still
 * demands stays where it is.
 */
import type { NodeAssignmentStatus, PodIdentity } from '../../lib/api/types.js';
import { normalizeId } from '../azure/ids.js';
import type { StepDeps } from './deps.js';
import { desiredScaleSets, keyOf } from './desired.js';
import type { ClusterView } from './ports.js';
import type { Demand } from './scaleset-batcher.js';
import { bad, ok, type Cond } from './status.js';

/** For the batcher: the demands of Node-mode PodIdentities as recorded in their status. */
export function recordedDemands(view: ClusterView): Demand[] {
  const out: Demand[] = [];
  for (const pid of view.podIdentities()) {
    if (pid.metadata.deletionTimestamp) continue; // being deleted: its identity leaves the scale sets
    if (pid.status?.mode !== 'Node' || !pid.status.resourceId) continue;
    out.push({ key: keyOf(pid), identityId: pid.status.resourceId, scaleSets: (pid.status.nodeAssignments ?? []).map((n) => n.scaleSet) });
  }
  return out;
}

/** Safety net for a requeue while the batcher works (it enqueues the key itself when it settles). */
export const batchRequeueMs = (d: Pick<StepDeps, 'settings'>): number => (d.settings.batchWindowMs ?? 2000) * 5 + 5000;

/**
 * "Which scale sets to flush": the one place that decides. Of `candidates` (scale sets this PodIdentity's status
 * or the ownership record names) minus `keep` (still desired), those that may still carry the identity: ones
 * this process has not flushed yet, or where it is assigned or a flush is pending.
 */
function scaleSetsToFlush(d: StepDeps, identityId: string, candidates: string[], keep: ReadonlyMap<string, unknown> = new Map()): string[] {
  const unique = new Map(candidates.map((s) => [normalizeId(s), s]));
  return [...unique].filter(([n, s]) => {
    if (keep.has(n)) return false;
    if (!d.batcher.knows(s)) return true;
    const st = d.batcher.state(s, identityId);
    return st.assigned || st.pending;
  }).map(([, s]) => s);
}

/**
 * Withdraws this PodIdentity's demand for `identityId` from every scale set its status or (with
 * `ownershipRecord`) the durable ownership record names, and returns those where the identity is still being
 * removed: scale sets where another PodIdentity still demands it are not waited for.
 */
export async function withdrawScaleSets(d: StepDeps, pid: PodIdentity, identityId: string, opts: { ownershipRecord: boolean }): Promise<string[]> {
  const key = keyOf(pid);
  const candidates = (pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet);
  if (opts.ownershipRecord) candidates.push(...(await d.ownership.scaleSetsWith(identityId)));
  const carrying = scaleSetsToFlush(d, identityId, candidates);
  if (carrying.length) d.batcher.setDemand({ key, identityId, scaleSets: [] }, { alsoFlush: carrying });
  return carrying.filter((s) => !d.batcher.demandedByOthers(s, identityId, key));
}

export function convergeNodes(d: StepDeps, pid: PodIdentity, identityId: string, verify: boolean): { statuses: NodeAssignmentStatus[]; condition: Cond; requeueAfterMs?: number } {
  const key = keyOf(pid);
  const { scaleSets, unmapped } = desiredScaleSets(d.view, pid);
  const previous = (pid.status?.nodeAssignments ?? []).map((n) => n.scaleSet);
  d.batcher.setDemand({ key, identityId, scaleSets: [...scaleSets.values()].map((e) => e.id) }, { alsoFlush: scaleSetsToFlush(d, identityId, previous, scaleSets), verify });
  const statuses: NodeAssignmentStatus[] = [];
  const problems: string[] = [];
  let pending = false;
  let limit = false;
  for (const e of scaleSets.values()) {
    const st = d.batcher.state(e.id, identityId);
    const state = st.assigned && !st.pending ? 'Assigned' : st.limitExceeded || (st.error && !st.pending) ? 'Failed' : 'Pending';
    if (st.limitExceeded) limit = true;
    if (state === 'Pending') pending = true;
    if (st.error) problems.push(st.error);
    statuses.push({ scaleSet: e.id, nodes: [...e.nodes].sort(), state });
  }
  // Removals from scale sets no longer needed must finish too before we call it converged.
  for (const p of previous) if (!scaleSets.has(normalizeId(p)) && d.batcher.state(p, identityId).pending) pending = true;
  if (unmapped.length) problems.push(`nodes without a scale-set providerID: ${unmapped.join(', ')}`);
  let condition: Cond;
  if (limit) condition = bad('LimitExceeded', problems[0] ?? 'scale set identity limit reached');
  else if (problems.length && !pending) condition = bad(unmapped.length ? 'NodeNotOnScaleSet' : 'AzureError', problems.join('; '));
  else if (pending) condition = bad('Pending', `assigning the identity to ${statuses.length} scale set(s)${problems.length ? `: ${problems.join('; ')}` : ''}`);
  else condition = ok('NodesAssigned', statuses.length ? `assigned on ${statuses.length} scale set(s)` : 'no selected pods are running on nodes');
  return { statuses, condition, ...(pending ? { requeueAfterMs: batchRequeueMs(d) } : {}) };
}

/**
 * With deletionPolicy Retain: the identity stays where this PodIdentity put it and stops counting as the
 * operator's there, so no flush ever removes it. Only where no other PodIdentity demands it: a scale set another
 * PodIdentity (perhaps of another namespace) shares stays recorded, so the identity leaves it with that
 * PodIdentity's pods, and this PodIdentity's demand is withdrawn.
 */
export async function retainScaleSets(d: StepDeps, pid: PodIdentity, identityId: string): Promise<void> {
  const key = keyOf(pid);
  for (const ss of await d.ownership.scaleSetsWith(identityId)) {
    if (d.batcher.demandedByOthers(ss, identityId, key)) continue;
    const owned = await d.ownership.get(ss);
    await d.ownership.set(ss, owned.filter((o) => normalizeId(o) !== normalizeId(identityId)));
  }
  d.batcher.setDemand({ key, identityId, scaleSets: [] });
}
