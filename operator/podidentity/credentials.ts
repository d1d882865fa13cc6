/**
 * The federated-credential step (Federated mode). A credential's name is recomputable from its subject, so a
 * crash before a status write never orphans one. Credentials are namespace-scoped by their subject; releasing
 * one is reference-counted like role assignments: never one another PodIdentity on the same identity claims.
 */
import { CONDITION_CREDENTIALS_READY, MAX_FEDERATED_CREDENTIALS, TOKEN_EXCHANGE_AUDIENCE, type FederatedCredentialStatus, type PodIdentity } from '../../lib/api/types.js';
import { LimitExceededError, NotFoundError, ThrottledError } from '../azure/errors.js';
import type { AzureIdentity, FederatedCredential } from '../azure/types.js';
import type { StepDeps } from './deps.js';
import { desiredServiceAccounts, othersClaims } from './desired.js';
import { federatedCredentialName, serviceAccountSubject } from './names.js';
import { bad, conditionOf, errMessage, ok, type Cond } from './status.js';

const conditionMessage = (pid: PodIdentity): string | undefined => conditionOf(pid, CONDITION_CREDENTIALS_READY)?.message;

/** Whether an Azure FIC is one this operator made for `namespace` (its name is recomputable from its subject). */
function isNamespaceCredential(namespace: string, fic: { name: string; subject: string }): boolean {
  return fic.subject.startsWith(`system:serviceaccount:${namespace}:`) && fic.name === federatedCredentialName(fic.subject);
}

/**
 * "Delete our federated credentials": the one place that does. Removes this namespace's credentials on the
 * identity except `keep` and those another PodIdentity on the identity claims. `existing`: a list already read.
 */
export async function releaseCredentials(d: StepDeps, pid: PodIdentity, identityId: string, keep: ReadonlySet<string> = new Set(), existing?: FederatedCredential[]): Promise<void> {
  const ns = pid.metadata.namespace ?? '';
  let list = existing;
  if (!list) {
    try {
      list = await d.azure.federatedCredentials.list(identityId);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }
  const others = othersClaims(d.view, pid, identityId, undefined).credentials;
  for (const f of list) {
    if (!isNamespaceCredential(ns, f) || keep.has(f.name) || others.has(f.name)) continue;
    await d.azure.federatedCredentials.delete(identityId, f.name);
    d.logger?.info('federated credential removed', { namespace: ns, name: pid.metadata.name, subject: f.subject });
  }
}

export interface IssuerSource {
  resolve(): Promise<string>;
}

/** The cluster's issuer: from settings, or read once from the AKS cluster. */
export function issuerSource(d: Pick<StepDeps, 'settings' | 'azure'>): IssuerSource {
  let issuer = d.settings.oidcIssuer;
  return {
    async resolve() {
      if (issuer) return issuer;
      const cluster = d.settings.aksClusterId;
      if (!cluster) throw new Error('no OIDC issuer: set --oidc-issuer or --aks-cluster-id');
      issuer = await d.azure.cluster.getOidcIssuer(cluster);
      return issuer;
    },
  };
}

export async function convergeCredentials(d: StepDeps, issuers: IssuerSource, pid: PodIdentity, identity: AzureIdentity, fresh: boolean): Promise<{ statuses: FederatedCredentialStatus[]; condition: Cond; error?: unknown }> {
  const ns = pid.metadata.namespace ?? '';
  const log = d.logger;
  const serviceAccounts = desiredServiceAccounts(d.view, pid);
  const previous = pid.status?.federatedCredentials ?? [];
  let issuer: string;
  try {
    issuer = await issuers.resolve();
  } catch (err) {
    if (err instanceof ThrottledError) throw err;
    return { statuses: previous, condition: bad('IssuerUnknown', errMessage(err)), error: err };
  }
  const desired = serviceAccounts.map((sa) => {
    const subject = serviceAccountSubject(ns, sa);
    return { name: federatedCredentialName(subject), issuer, subject, audiences: [TOKEN_EXCHANGE_AUDIENCE] };
  });
  // When each credential was last created or changed in Azure: Azure AD accepts it only after it propagates.
  const written = new Map<string, string>();
  try {
    const existing = fresh ? [] : await d.azure.federatedCredentials.list(identity.id);
    const foreign = existing.filter((f) => !isNamespaceCredential(ns, f));
    if (desired.length + foreign.length > MAX_FEDERATED_CREDENTIALS) {
      // A clear condition, no retry storm: this only changes when the spec or the pods do.
      const message = `${desired.length} service accounts need federated credentials, but an identity holds at most ${MAX_FEDERATED_CREDENTIALS}${foreign.length ? ` (${foreign.length} are not managed by this PodIdentity)` : ''}`;
      d.writer.event(pid, 'Warning', 'LimitExceeded', message);
      return { statuses: previous, condition: bad('LimitExceeded', message) };
    }
    // A name is a 40-bit hash of the subject: one already holding another subject (a collision, which a
    // service-account name can be chosen to produce) belongs to someone else and is never overwritten.
    const taken = desired.flatMap((want) => existing.filter((f) => f.name === want.name && f.subject !== want.subject).map((f) => ({ want, holder: f.subject })));
    if (taken.length) {
      const message = taken.map((t) => `federated credential name ${t.want.name} for ${t.want.subject} is already used on the identity by ${t.holder}; not overwritten (rename the service account)`).join('; ');
      if (conditionMessage(pid) !== message) d.writer.event(pid, 'Warning', 'CredentialNameTaken', message);
      return { statuses: previous, condition: bad('CredentialNameTaken', message) };
    }
    // Removals first, so a swap never hits the limit.
    await releaseCredentials(d, pid, identity.id, new Set(desired.map((x) => x.name)), existing);
    for (const want of desired) {
      const have = existing.find((f) => f.name === want.name);
      if (have && have.issuer === want.issuer && have.subject === want.subject && have.audiences.length === 1 && have.audiences[0] === TOKEN_EXCHANGE_AUDIENCE) continue;
      await d.azure.federatedCredentials.ensure(identity.id, want);
      written.set(want.name, d.now().toISOString());
      log?.info('federated credential ensured', { namespace: ns, name: pid.metadata.name, clientId: identity.clientId, subject: want.subject });
    }
  } catch (err) {
    if (err instanceof ThrottledError) throw err;
    if (err instanceof LimitExceededError) return { statuses: previous, condition: bad('LimitExceeded', errMessage(err)) };
    return { statuses: previous, condition: bad('AzureError', errMessage(err)), error: err };
  }
  const statuses = desired.map((x): FederatedCredentialStatus => {
    const before = previous.find((p) => p.name === x.name && p.subject === x.subject && p.issuer === x.issuer)?.lastWriteTime;
    const lastWriteTime = written.get(x.name) ?? before;
    return { name: x.name, issuer: x.issuer, subject: x.subject, ...(lastWriteTime ? { lastWriteTime } : {}) };
  });
  return {
    statuses,
    condition: ok('CredentialsReady', statuses.length ? `federated credentials for service accounts ${serviceAccounts.join(', ')}` : 'no service accounts in use yet'),
  };
}
