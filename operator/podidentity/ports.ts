import type { PodIdentity, PodIdentityPolicy } from '../../lib/api/types.js';
import type { ExchangeReport } from './propagation.js';

/** The fields of a Pod the operator keeps in its cache (see slimPod in main.ts). */
export interface SlimPod {
  metadata: { name?: string; namespace?: string; labels?: Record<string, string>; uid?: string; resourceVersion?: string };
  spec?: { nodeName?: string; serviceAccountName?: string };
  status?: { phase?: string };
}

export interface SlimNode {
  metadata: { name?: string; resourceVersion?: string };
  spec?: { providerID?: string };
}

/** Read-only view of the informer caches the reconciler needs. */
export interface ClusterView {
  podIdentity(key: string): PodIdentity | undefined;
  podIdentities(): PodIdentity[];
  policies(): PodIdentityPolicy[];
  /** undefined when the namespace is not (yet) in the cache. */
  namespaceLabels(namespace: string): Record<string, string> | undefined;
  pods(namespace: string): SlimPod[];
  /** Pods in `namespace` labelled `podidentity.dev/identity=<value>` (what a PodIdentity without a selector selects). */
  podsLabelledFor(namespace: string, value: string): SlimPod[];
  /** PodIdentities in `namespace` that set their own `spec.selector`. */
  podIdentitiesWithSelector(namespace: string): PodIdentity[];
  /**
   * PodIdentities whose status records the identity (`status.resourceId`) or whose spec names it
   * (`spec.identity.existing.resourceId`), ids compared in canonical form: those that may share its grants
   * and credentials. An index lookup, so a release costs the same at any number of PodIdentities.
   */
  podIdentitiesOnIdentity(identityId: string): PodIdentity[];
  node(name: string): SlimNode | undefined;
  /** FirstTokenExchange Events about the PodIdentity `<namespace>/<name>` (absent: none are watched). */
  exchangeReports?(key: string): ExchangeReport[];
}

export type EventType = 'Normal' | 'Warning';

/** The writes the reconciler makes to Kubernetes. */
export interface PodIdentityWriter {
  /**
   * Adds the finalizer (with the object's resourceVersion as precondition; a conflict throws → retry).
   * Resolves with the object's new resourceVersion when known.
   */
  addFinalizer(pid: PodIdentity, finalizer: string): Promise<string | void>;
  /** Removes the finalizer; an object that is already gone counts as done. */
  removeFinalizer(pid: PodIdentity, finalizer: string): Promise<void>;
  /** Merge-patches /status. Resolves with the object's new resourceVersion when known. */
  patchStatus(pid: PodIdentity, status: Record<string, unknown>): Promise<string | void>;
  /**
   * Queues a best-effort Event and returns at once: never throws and never waits for the API server (Events
   * are dropped, and counted, when too many are waiting). A reconcile is never held by an Event.
   */
  event(pid: PodIdentity, type: EventType, reason: string, message: string): void;
}
