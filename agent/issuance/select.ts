import { CONDITION_CREDENTIAL_PROPAGATED, CONDITION_READY, type Mode, type PodIdentity } from '../../lib/api/types.js';
import type { IdentityHint } from '../imds/protocol.js';

/** A PodIdentity the operator has finished: everything issuance needs, from its status. */
export interface ReadyIdentity {
  namespace: string;
  name: string;
  mode: Mode;
  clientId: string;
  principalId: string;
  tenantId: string;
  resourceId: string;
  /** Federated credentials the operator recorded, by subject: when each was last written (unix ms, null: unknown). */
  credentialWrites?: ReadonlyMap<string, number | null>;
  uid?: string;
  /** Whether the operator has recorded that Azure AD accepted the credentials (FederatedCredentialPropagated). */
  propagated?: boolean;
}

export type Selection =
  | { kind: 'selected'; identity: ReadyIdentity }
  /** A matching PodIdentity exists but is not Ready: worth waiting for. */
  | { kind: 'not_ready'; names: string[] }
  | { kind: 'none'; candidates: string[] }
  | { kind: 'multiple'; candidates: string[] };

export function isReady(pid: PodIdentity): boolean {
  const ready = pid.status?.conditions?.find((c) => c.type === CONDITION_READY);
  return ready?.status === 'True' && !!pid.status?.clientId;
}

export function readyIdentity(pid: PodIdentity, defaultMode: Mode): ReadyIdentity {
  const s = pid.status ?? {};
  return {
    namespace: pid.metadata.namespace ?? '',
    name: pid.metadata.name ?? '',
    mode: s.mode ?? pid.spec.mode ?? defaultMode,
    clientId: (s.clientId ?? '').toLowerCase(),
    principalId: (s.principalId ?? '').toLowerCase(),
    tenantId: s.tenantId ?? '',
    resourceId: s.resourceId ?? '',
    uid: pid.metadata.uid ?? '',
    propagated: s.conditions?.find((c) => c.type === CONDITION_CREDENTIAL_PROPAGATED)?.status === 'True',
    credentialWrites: new Map(
      (s.federatedCredentials ?? []).map((c) => {
        const at = c.lastWriteTime ? Date.parse(c.lastWriteTime) : Number.NaN;
        return [c.subject, Number.isFinite(at) ? at : null] as const;
      }),
    ),
  };
}

function matchesHint(pid: PodIdentity, hint: IdentityHint): boolean {
  const s = pid.status ?? {};
  const eq = (a: string | undefined, b: string) => !!a && a.toLowerCase() === b.toLowerCase();
  switch (hint.kind) {
    case 'none':
      return true;
    case 'client_id':
      return eq(s.clientId, hint.value);
    case 'object_id':
      return eq(s.principalId, hint.value);
    case 'msi_res_id':
      return eq(s.resourceId, hint.value);
  }
}

const names = (pids: readonly PodIdentity[]) => pids.map((p) => p.metadata.name ?? '');

/**
 * IMDS's selection rules over the PodIdentities that select the pod: the one the hint names, or the only
 * one; several and no hint is IMDS's "Multiple user assigned identities" error.
 */
export function selectIdentity(candidates: readonly PodIdentity[], hint: IdentityHint, defaultMode: Mode): Selection {
  if (candidates.length === 0) return { kind: 'none', candidates: [] };
  if (hint.kind === 'none') {
    if (candidates.length > 1) return { kind: 'multiple', candidates: names(candidates) };
    const only = candidates[0]!;
    return isReady(only) ? { kind: 'selected', identity: readyIdentity(only, defaultMode) } : { kind: 'not_ready', names: names(candidates) };
  }
  const matching = candidates.filter((pid) => matchesHint(pid, hint));
  const ready = matching.find(isReady);
  if (ready) return { kind: 'selected', identity: readyIdentity(ready, defaultMode) };
  if (matching.length > 0) return { kind: 'not_ready', names: names(matching) };
  // A PodIdentity that is not Ready may not have its ids in status yet: it could be the one asked for.
  const pending = candidates.filter((pid) => !isReady(pid));
  if (pending.length > 0) return { kind: 'not_ready', names: names(pending) };
  return { kind: 'none', candidates: names(candidates) };
}

/**
 * `selectIdentity`, remembered per candidate array and hint. Both are the same objects while nothing they
 * derive from changes (the attributor's candidates per pod and namespace snapshot, the parsed target's hint),
 * and selection reads nothing else, so a remembered answer is exactly what selecting again would give.
 */
export class IdentitySelector {
  private readonly memo = new WeakMap<readonly PodIdentity[], WeakMap<IdentityHint, Selection>>();

  constructor(private readonly defaultMode: Mode) {}

  select(candidates: readonly PodIdentity[], hint: IdentityHint): Selection {
    let byHint = this.memo.get(candidates);
    if (!byHint) this.memo.set(candidates, (byHint = new WeakMap()));
    let selection = byHint.get(hint);
    if (!selection) byHint.set(hint, (selection = selectIdentity(candidates, hint, this.defaultMode)));
    return selection;
  }
}
