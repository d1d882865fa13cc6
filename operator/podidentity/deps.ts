import type { Mode } from '../../lib/api/types.js';
import type { Clock } from '../k8s/conditions.js';
import type { Logger } from '../../lib/log.js';
import type { AzureClients } from '../azure/types.js';
import type { OwnershipStore } from './ownership.js';
import type { ClusterView, PodIdentityWriter } from './ports.js';
import type { ScaleSetBatcher } from './scaleset-batcher.js';

export interface ReconcilerSettings {
  subscriptionId: string;
  defaultResourceGroup: string;
  location: string;
  defaultMode: Mode;
  /** The cluster's service-account issuer; or resolved from `aksClusterId`. */
  oidcIssuer?: string;
  aksClusterId?: string;
  /** How often a converged PodIdentity is re-checked against Azure (drift repair). Default 10 min. */
  fullSyncIntervalMs?: number;
  /** Batch window of the scale-set batcher (to know when to look again). */
  batchWindowMs?: number;
}

export interface ReconcilerDeps {
  view: ClusterView;
  writer: PodIdentityWriter;
  azure: AzureClients;
  batcher: ScaleSetBatcher;
  ownership: OwnershipStore;
  settings: ReconcilerSettings;
  logger?: Logger;
  /** The one clock every step reads. */
  now: Clock;
}

/** What each step gets for one reconcile: Azure calls there stop when the reconcile's signal aborts. */
export type StepDeps = ReconcilerDeps;
