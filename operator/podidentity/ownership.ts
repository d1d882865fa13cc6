import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { apiStatusCode } from '../k8s/objects.js';
import { normalizeId, shortHash } from '../azure/ids.js';
import { pooledApiClient } from '../../lib/k8s/pooled.js';

/**
 * Which user-assigned identities the operator itself added to each scale set. Durable, so that a restart or
 * a new leader never removes an identity someone else put there, and never forgets one it added.
 */
export interface OwnershipStore {
  get(scaleSetId: string): Promise<string[]>;
  set(scaleSetId: string, identityIds: string[]): Promise<void>;
  /** Every scale set recorded as carrying `identityId`. */
  scaleSetsWith(identityId: string): Promise<string[]>;
}

interface Entry {
  scaleSet: string;
  identities: string[];
}

const keyOf = (scaleSetId: string): string => `vmss-${shortHash(normalizeId(scaleSetId), 24)}`;

/** One ConfigMap in the operator's namespace; one key per scale set holding `{scaleSet, identities}`. */
export class ConfigMapOwnershipStore implements OwnershipStore {
  private readonly api: CoreV1Api;

  constructor(kc: KubeConfig, private readonly namespace: string, private readonly name = 'podidentity-operator-scaleset-ownership') {
    this.api = pooledApiClient(kc, CoreV1Api);
  }

  private async read(): Promise<Record<string, string>> {
    try {
      const cm = await this.api.readNamespacedConfigMap({ name: this.name, namespace: this.namespace });
      return cm.data ?? {};
    } catch (err) {
      if (apiStatusCode(err) === 404) return {};
      throw err;
    }
  }

  private parse(value: string | undefined): Entry | undefined {
    if (!value) return undefined;
    try {
      return JSON.parse(value) as Entry;
    } catch {
      return undefined;
    }
  }

  async get(scaleSetId: string): Promise<string[]> {
    return this.parse((await this.read())[keyOf(scaleSetId)])?.identities ?? [];
  }

  async scaleSetsWith(identityId: string): Promise<string[]> {
    const data = await this.read();
    return Object.values(data)
      .map((v) => this.parse(v))
      .filter((e): e is Entry => !!e && e.identities.some((i) => normalizeId(i) === normalizeId(identityId)))
      .map((e) => e.scaleSet);
  }

  async set(scaleSetId: string, identityIds: string[]): Promise<void> {
    const key = keyOf(scaleSetId);
    const value = identityIds.length ? JSON.stringify({ scaleSet: scaleSetId, identities: [...identityIds].sort() }) : null;
    // A merge patch of one key: concurrent writers of different scale sets never overwrite each other.
    const body = { data: { [key]: value } };
    try {
      await this.api.patchNamespacedConfigMap({ name: this.name, namespace: this.namespace, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    } catch (err) {
      if (apiStatusCode(err) !== 404) throw err;
      if (value === null) return;
      try {
        await this.api.createNamespacedConfigMap({
          namespace: this.namespace,
          body: { metadata: { name: this.name, namespace: this.namespace, labels: { 'app.kubernetes.io/name': 'podidentity-operator' } }, data: { [key]: value } },
        });
      } catch (createErr) {
        if (apiStatusCode(createErr) !== 409) throw createErr;
        await this.api.patchNamespacedConfigMap({ name: this.name, namespace: this.namespace, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      }
    }
  }
}
