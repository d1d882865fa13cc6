import { AuthorizationManagementClient } from '@azure/arm-authorization';
import type { ComputeManagementClient } from '@azure/arm-compute';
import type { ContainerServiceClient } from '@azure/arm-containerservice';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import type { TokenCredential } from '@azure/identity';
import type { OperatorMetrics } from '../../metrics.js';
import { instrumentedCall } from '../instrument.js';
import type { AzureClients } from '../types.js';
import { ArmClusterClient } from './cluster.js';
import { armClientOptions } from './credential.js';
import { ArmFederatedCredentialClient, ArmIdentityClient } from './identities.js';
import { ArmRoleClient } from './roles.js';
import { ArmScaleSetClient } from './scalesets.js';

export interface ArmClientsOptions {
  credential: TokenCredential;
  subscriptionId: string;
  /** https://management.azure.com or the emulator. */
  endpoint: string;
  metrics?: OperatorMetrics;
  /** LRO polling interval for scale-set PATCHes. */
  pollIntervalMs?: number;
}

/** Builds a client on first use and keeps it; a failed import is retried on the next use. */
function lazy<T>(load: () => Promise<T>): () => Promise<T> {
  let client: Promise<T> | undefined;
  return () => (client ??= load().catch((err: unknown) => {
    client = undefined;
    throw err;
  }));
}

/** One SDK client per subscription, made on first use: a resource is always addressed in its own subscription. */
function perSubscription<T>(make: (subscriptionId: string) => T): (subscriptionId: string) => T {
  const clients = new Map<string, T>();
  return (subscriptionId) => {
    const key = subscriptionId.toLowerCase();
    let client = clients.get(key);
    if (!client) clients.set(key, (client = make(subscriptionId)));
    return client;
  };
}

/**
 * The real Azure adapters, on the Azure SDKs. arm-compute and arm-containerservice are loaded on first use:
 * each holds tens of MB of generated code that a Federated-only operator with --oidc-issuer never runs.
 */
export function createArmClients(opts: ArmClientsOptions): AzureClients {
  const call = instrumentedCall(opts.metrics);
  const clientOptions = armClientOptions(opts.endpoint);
  const msi = perSubscription((sub) => new ManagedServiceIdentityClient(opts.credential, sub, clientOptions));
  const authz = perSubscription((sub) => new AuthorizationManagementClient(opts.credential, sub, clientOptions));
  const computeFor = perSubscription((sub) => lazy(async (): Promise<ComputeManagementClient> => new (await import('@azure/arm-compute')).ComputeManagementClient(opts.credential, sub, clientOptions)));
  const compute = (subscriptionId: string) => computeFor(subscriptionId)();
  const aks = lazy(async (): Promise<ContainerServiceClient> => new (await import('@azure/arm-containerservice')).ContainerServiceClient(opts.credential, opts.subscriptionId, clientOptions));
  return {
    identities: new ArmIdentityClient(msi, call),
    federatedCredentials: new ArmFederatedCredentialClient(msi, call),
    roles: new ArmRoleClient(authz(opts.subscriptionId), authz, opts.subscriptionId, call),
    scaleSets: new ArmScaleSetClient(compute, call, opts.pollIntervalMs),
    cluster: new ArmClusterClient(aks, call),
  };
}
