import { shortHash } from '../azure/ids.js';

/** Azure tags the operator puts on identities it creates. Azure tag names may not contain '/'. */
export const TAG_MANAGED_BY = 'podidentity-managed-by';
export const TAG_NAMESPACE = 'podidentity-namespace';
export const TAG_NAME = 'podidentity-name';
export const TAG_UID = 'podidentity-uid';
export const MANAGED_BY = 'podidentity-operator';

const IDENTITY_MAX = 128;
const FIC_MAX = 120;

function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '-');
}

/**
 * The default Azure name of a PodIdentity's managed identity: `<namespace>-<name>`, limited to Azure's rules
 * (3–128 chars of `[A-Za-z0-9-_]`, starting with a letter or digit). When characters had to be replaced or the
 * name truncated, a short hash of the original keeps distinct PodIdentities distinct.
 */
export function defaultIdentityName(namespace: string, name: string): string {
  const raw = `${namespace}-${name}`;
  let out = sanitize(raw).replace(/^[^A-Za-z0-9]+/, '');
  const changed = out !== raw;
  if (changed || out.length > IDENTITY_MAX || out.length < 3) {
    const hash = shortHash(raw);
    out = `${out.slice(0, IDENTITY_MAX - hash.length - 1)}-${hash}`.replace(/^-/, '');
  }
  return out;
}

export const serviceAccountSubject = (namespace: string, serviceAccount: string): string => `system:serviceaccount:${namespace}:${serviceAccount}`;

/**
 * The name of the federated credential for one subject. Deterministic: the operator recognises credentials it
 * created by recomputing this name, so a crash before a status write can never orphan one.
 */
export function federatedCredentialName(subject: string): string {
  const sa = subject.split(':').pop() ?? 'sa';
  const hash = shortHash(subject, 10);
  return `pid-${sanitize(sa).slice(0, FIC_MAX - hash.length - 5)}-${hash}`;
}
