import { shortHash } from '../azure/ids.js';

/** Azure tags the operator puts on identities it creates. Azure tag names may not contain '/'. */
/** Tag names the operator reserves (compared case-insensitively): users' managed.tags in it are dropped. */
export const TAG_PREFIX = 'podidentity-';
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
 * The default Azure name of a PodIdentity's managed identity: `<namespace>_<name>` with the name's dots written
 * as `_`. Collision-free: a namespace is a DNS label (`[a-z0-9-]`, at most 63) and a name a DNS subdomain
 * (`[a-z0-9.-]`), so neither holds `_`, the first `_` ends the namespace, and `.`→`_` is one-to-one on the
 * name's alphabet. Only a name that would exceed Azure's 128 characters (or any input outside those alphabets)
 * is cut and given a 16-hex-digit hash of `<namespace>/<name>`; such a clash would in any case be refused by the
 * ownership tags, never taken over.
 */
export function defaultIdentityName(namespace: string, name: string): string {
  const raw = `${namespace}_${name.replace(/\./g, '_')}`;
  if (/^[a-z0-9][a-z0-9-]*_[a-z0-9_-]+$/.test(raw) && !namespace.includes('_') && raw.length <= IDENTITY_MAX) return raw;
  const hash = shortHash(`${namespace}/${name}`, 16);
  const cut = sanitize(raw).replace(/^[^A-Za-z0-9]+/, '').slice(0, IDENTITY_MAX - hash.length - 1);
  return `${cut}-${hash}`.replace(/^-/, 'x');
}

/**
 * The namespace whose default-name space (`<namespace>_…`) holds `name`, lower-cased (Azure names are
 * case-insensitive), or undefined for a name without `_`. Only that namespace may give a managed identity such a
 * name: otherwise any namespace could create another's default name first and lock it out for good.
 */
export function reservedForNamespace(name: string): string | undefined {
  const i = name.indexOf('_');
  return i > 0 ? name.slice(0, i).toLowerCase() : undefined;
}

/**
 * The default name before it became collision-free (`<namespace>-<name>`: `a`/`b-web` and `a-b`/`web` shared
 * one). Identities created under it are still used, but only when their `podidentity-uid` tag proves they were
 * created for the very PodIdentity asking.
 */
export function legacyIdentityName(namespace: string, name: string): string {
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
