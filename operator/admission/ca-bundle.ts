/**
 * Keeps this replica's serving certificate in the ValidatingWebhookConfiguration's caBundle. Each operator
 * replica makes its own self-signed certificate (its key never leaves the process), so the bundle holds one
 * certificate per live replica: this one's is added, those of replicas that are gone (their pod no longer
 * exists) or that expired are dropped, anything else is kept. Writes use the object's resourceVersion, so two
 * replicas starting together never drop each other's certificate. The same write keeps the matchConditions
 * naming the agent this operator guards (agentMatchConditions).
 */
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, type KubeConfig, type V1MatchCondition, type V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
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

/**
 * The one matchCondition a webhook of this configuration may have (1.28+): the API server calls it for the
 * agent's username. The username is a CEL string literal no manifest tool rewrites: installed in another
 * namespace (kustomize's namespace transformer), the shipped one would name podidentity-system, the API
 * server would never call the webhook for the real agent, and the agent would mint anything (fail open).
 * So the operator, which knows its agent, keeps them right, as it keeps the caBundle. Any other condition
 * could only exclude more of the agent's requests, so none is kept.
 */
export function agentMatchConditions(agentUsername: string): V1MatchCondition[] {
  return [{ name: 'only-the-pod-identity-agent', expression: `request.userInfo.username == '${agentUsername}'` }];
}

export interface PublishOptions {
  store: CaBundleStore;
  certPem: string;
  /** This replica's pod name; others' certificates are kept while their pod exists. */
  podName: string;
  podExists(name: string): Promise<boolean>;
  /** The agent's username: webhooks that have matchConditions get exactly agentMatchConditions(it). */
  agentUsername?: string;
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
    // Clusters before 1.28 have no matchConditions (the API server drops them): every TokenRequest reaches
    // the webhook there, which is safe, so none are added.
    const conditions = opts.agentUsername ? agentMatchConditions(opts.agentUsername) : undefined;
    const wrongConditions = (w: (typeof webhooks)[number]) => conditions !== undefined && (w.matchConditions?.length ?? 0) > 0 && JSON.stringify(w.matchConditions) !== JSON.stringify(conditions);
    if (webhooks.every((w) => w.clientConfig.caBundle === bundle && !wrongConditions(w))) return { changed: false };
    for (const w of webhooks) {
      w.clientConfig.caBundle = bundle;
      if (wrongConditions(w)) w.matchConditions = conditions;
    }
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
