/**
 * Keeps this replica's serving certificate in the ValidatingWebhookConfiguration's caBundle. Each operator
 * replica makes its own self-signed certificate (its key never leaves the process), so the bundle holds one
 * certificate per live replica: this one's is added, those of replicas that are gone (their pod no longer
 * exists) or that expired are dropped, anything else is kept. Writes use the object's resourceVersion, so two
 * replicas starting together never drop each other's certificate.
 */
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, type KubeConfig, type V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
import { pooledApiClient } from '../../lib/k8s/pooled.js';

/** The common name carries the replica's pod name, so that others can tell when it is gone. */
export const CN_PREFIX = 'podidentity-operator webhook ';
const MAX_CERTIFICATES = 16;

export interface CaBundleStore {
  read(): Promise<V1ValidatingWebhookConfiguration>;
  /** Throws with `code` 409 when the object changed since it was read. */
  replace(obj: V1ValidatingWebhookConfiguration): Promise<void>;
}

export function apiCaBundleStore(kc: KubeConfig, name: string): CaBundleStore {
  const api = pooledApiClient(kc, AdmissionregistrationV1Api);
  return {
    read: () => api.readValidatingWebhookConfiguration({ name }),
    replace: async (body) => void (await api.replaceValidatingWebhookConfiguration({ name, body })),
  };
}

export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? [];
}

/** Owner pod name of a certificate this operator made; undefined for certificates put there by someone else. */
export function ownerOf(pem: string): string | undefined {
  try {
    const cn = /(?:^|\n)CN=(.*)/.exec(new X509Certificate(pem).subject)?.[1];
    return cn?.startsWith(CN_PREFIX) ? cn.slice(CN_PREFIX.length) : undefined;
  } catch {
    return undefined;
  }
}

export interface PublishOptions {
  store: CaBundleStore;
  certPem: string;
  /** This replica's pod name; others' certificates are kept while their pod exists. */
  podName: string;
  podExists(name: string): Promise<boolean>;
  now?: Date;
}

/** Whether the bundle, after this call, holds `certPem` in every webhook of the configuration. */
export async function publishCaBundle(opts: PublishOptions): Promise<{ changed: boolean }> {
  for (let attempt = 0; ; attempt++) {
    const current = await opts.store.read();
    const webhooks = current.webhooks ?? [];
    if (webhooks.length === 0) throw new Error(`ValidatingWebhookConfiguration ${current.metadata?.name} has no webhooks`);
    const existing = new Set(webhooks.flatMap((w) => splitPem(w.clientConfig.caBundle ? Buffer.from(w.clientConfig.caBundle, 'base64').toString('utf8') : '')));
    const keep: string[] = [opts.certPem];
    for (const pem of existing) {
      if (pem === opts.certPem) continue;
      if (!(await stillValid(pem, opts))) continue;
      keep.push(pem);
    }
    // Newest first; a crash-looping replica can't grow the bundle without bound.
    keep.splice(MAX_CERTIFICATES);
    const bundle = Buffer.from(keep.join('')).toString('base64');
    if (webhooks.every((w) => w.clientConfig.caBundle === bundle)) return { changed: false };
    for (const w of webhooks) w.clientConfig.caBundle = bundle;
    try {
      await opts.store.replace(current);
      return { changed: true };
    } catch (err) {
      if ((err as { code?: number }).code === 409 && attempt < 5) continue;
      throw err;
    }
  }
}

async function stillValid(pem: string, opts: PublishOptions): Promise<boolean> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return false;
  }
  if (new Date(cert.validTo).getTime() <= (opts.now ?? new Date()).getTime()) return false;
  const owner = ownerOf(pem);
  // Certificates another tool put there (cert-manager, an SRE) are left alone.
  // Earlier certificates of this pod stay until they expire: connections made before a rotation use them.
  if (owner === undefined || owner === opts.podName) return true;
  return opts.podExists(owner);
}
