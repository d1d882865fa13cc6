import type { KubeConfig } from '@kubernetes/client-node';
import { getJson, RawApiError } from '../../lib/k8s/rest.js';
import type { SelectingIdentity } from '../../lib/api/types.js';
import type { IdentityLookup, PodFacts, PodLookup } from './token-request-policy.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

/**
 * Pods read from the API server on every decision (get pods, which the operator's role already has). The
 * webhook is on the agent's miss path only; a read there costs less than the exchange that follows.
 */
export class LivePodLookup implements PodLookup {
  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs = 3000,
  ) {}

  async get(namespace: string, name: string): Promise<PodFacts | undefined> {
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
    try {
      const pod = await getJson<{ metadata?: { uid?: string; labels?: Record<string, string> }; spec?: { nodeName?: string; serviceAccountName?: string; hostNetwork?: boolean }; status?: { phase?: string } }>(kubeConfigApiServer(this.kc), path, {}, AbortSignal.timeout(this.timeoutMs));
      return { uid: pod.metadata?.uid ?? '', nodeName: pod.spec?.nodeName ?? '', serviceAccountName: pod.spec?.serviceAccountName ?? '', phase: pod.status?.phase ?? '', hostNetwork: pod.spec?.hostNetwork === true, labels: pod.metadata?.labels ?? {} };
    } catch (err) {
      if (err instanceof RawApiError && err.code === 404) return undefined;
      throw err;
    }
  }
}

/** PodIdentities of a namespace read from the API server on every decision (list, which the operator has). */
export class LiveIdentityLookup implements IdentityLookup {
  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs = 3000,
  ) {}

  async inNamespace(namespace: string): Promise<SelectingIdentity[]> {
    const path = `/apis/podidentity.dev/v1alpha1/namespaces/${encodeURIComponent(namespace)}/podidentities`;
    const list = await getJson<{ items?: SelectingIdentity[] }>(kubeConfigApiServer(this.kc), path, {}, AbortSignal.timeout(this.timeoutMs));
    return (list.items ?? []).map((pid) => ({ metadata: pid.metadata ?? {}, spec: pid.spec ?? {}, ...(pid.status?.mode ? { status: { mode: pid.status.mode } } : {}) }));
  }
}

export interface ServiceAccountLookup {
  exists(namespace: string, name: string): Promise<boolean>;
}

/** Whether a ServiceAccount exists (get serviceaccounts, which the operator's role has). */
export class LiveServiceAccountLookup implements ServiceAccountLookup {
  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs = 3000,
  ) {}

  async exists(namespace: string, name: string): Promise<boolean> {
    try {
      await getJson(kubeConfigApiServer(this.kc), `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}`, {}, AbortSignal.timeout(this.timeoutMs));
      return true;
    } catch (err) {
      if (err instanceof RawApiError && err.code === 404) return false;
      throw err;
    }
  }
}
