/**
 * The watches: which PodIdentity keys an event on each watched kind brings back to the work queue.
 */
import type { KubernetesObject, V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import { matchesSelector } from '../../lib/api/selector.js';
import { DEFAULT_SELECTOR_LABEL, effectiveSelector, type PodIdentity, type PodIdentityPolicy } from '../../lib/api/types.js';
import type { Informer } from '../../lib/k8s/informer.js';
import type { Controller } from '../runtime/controller.js';
import { keyOf } from './desired.js';
import type { ClusterView, SlimPod } from './ports.js';

/**
 * PodIdentity keys in the pod's namespace whose selector matches it. Runs for every pod event, so it looks up
 * the PodIdentity the default label names instead of testing every PodIdentity in the namespace.
 */
export function keysSelecting(view: ClusterView, pod: SlimPod): string[] {
  const ns = pod.metadata.namespace;
  if (!ns) return [];
  const keys: string[] = [];
  const named = pod.metadata.labels?.[DEFAULT_SELECTOR_LABEL];
  const byLabel = named === undefined ? undefined : view.podIdentity(`${ns}/${named}`);
  if (byLabel && !byLabel.spec.selector) keys.push(`${ns}/${named}`);
  for (const pid of view.podIdentitiesWithSelector(ns)) if (matchesSelector(effectiveSelector(pid), pod.metadata.labels)) keys.push(keyOf(pid));
  return keys;
}

export interface WatchedInformers {
  identities: Informer<PodIdentity & KubernetesObject>;
  policies: Informer<PodIdentityPolicy & KubernetesObject>;
  namespaces: Informer<V1Namespace>;
  pods: Informer<V1Pod>;
  nodes: Informer<V1Node>;
}

/**
 * Every PodIdentity on its own changes; the pods it selects; every PodIdentity on a policy change; a
 * namespace's PodIdentities when its labels change (or first become known); the PodIdentities selecting pods
 * on a node whose providerID changes.
 */
export function watchPodIdentityInputs(controller: Controller, view: ClusterView, informers: WatchedInformers): Controller {
  const { identities, policies, namespaces, pods, nodes } = informers;
  return controller
    .watch(identities)
    .watch(pods, (pod) => keysSelecting(view, pod as SlimPod))
    .watch(policies, () => identities.list().map(keyOf))
    .watch(namespaces, (ns) => identities.byIndex('namespace', ns.metadata?.name ?? '').map(keyOf))
    .watch(nodes, (node) => [...new Set(pods.byIndex('node', node.metadata?.name ?? '').flatMap((p) => keysSelecting(view, p as SlimPod)))]);
}
