/** Shared setup for the operator e2e tests: the real API server, the Azure emulator, and the operator as a child process. */
import { randomUUID } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { GROUP, POLICY_PLURAL, PODIDENTITY_PLURAL, VERSION, type PodIdentity, type PodIdentityPolicySpec, type PodIdentitySpec } from '../../lib/api/types.js';
import { startAzureEmulator, type AzureEmulator, type EmulatorOptions } from '../../dev/azure-emulator/emulator.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { startProcess, type ManagedProcess } from '../../dev/support/processes.js';

export interface OperatorEnv {
  cluster: TestCluster;
  emu: AzureEmulator;
  operator: { clientId: string; clientSecret: string };
  namespace: string;
  /** Label that only this file's policies select. */
  tenantLabel: Record<string, string>;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  startOperator(name?: string, extraArgs?: string[]): ManagedProcess;
  rg(name: string): string;
}

export async function operatorEnv(emulatorOptions: EmulatorOptions = {}): Promise<OperatorEnv> {
  const cluster = await testCluster();
  const emu = await startAzureEmulator(emulatorOptions);
  const clientSecret = `secret-${randomUUID()}`;
  const { clientId } = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret, role: 'Owner' });
  emu.seed.resourceGroup('pods');
  emu.seed.resourceGroup('data');
  const tenant = `t${randomUUID().slice(0, 8)}`;
  const tenantLabel = { 'podidentity.dev/e2e-tenant': tenant };
  const namespace = await cluster.namespace('pid', tenantLabel);
  const core = cluster.kc.makeApiClient(CoreV1Api);
  const custom = cluster.kc.makeApiClient(CustomObjectsApi);
  const startOperator = (name = 'operator', extraArgs: string[] = []) =>
    startProcess(name, process.execPath, [
      '--import', 'tsx', 'operator/main.ts',
      '--kubeconfig', cluster.kubeconfigPath,
      '--subscription-id', emu.subscriptionId,
      '--resource-group', 'pods',
      '--location', 'eastus',
      '--oidc-issuer', cluster.issuer,
      '--arm-endpoint', emu.armEndpoint,
      '--authority-host', emu.authorityHost,
      '--tenant-id', emu.tenantId,
      '--client-id', clientId,
      '--watch-namespace', namespace,
      '--leader-election-namespace', namespace,
      '--metrics-port', '0',
      '--batch-window', '300ms',
      '--log-level', 'debug',
      ...extraArgs,
    ], { env: { ...process.env, NODE_EXTRA_CA_CERTS: emu.caCertPath, AZURE_CLIENT_SECRET: clientSecret } });
  return {
    cluster,
    emu,
    operator: { clientId, clientSecret },
    namespace,
    tenantLabel,
    core,
    custom,
    startOperator,
    rg: (name) => `/subscriptions/${emu.subscriptionId}/resourceGroups/${name}`,
  };
}

const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export async function createPodIdentity(env: OperatorEnv, name: string, spec: PodIdentitySpec): Promise<void> {
  await env.custom.createNamespacedCustomObject({
    group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace: env.namespace,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentity', metadata: { name }, spec },
  });
}

export async function getPodIdentity(env: OperatorEnv, name: string): Promise<PodIdentity | undefined> {
  try {
    return (await env.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace: env.namespace, name })) as PodIdentity;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export async function patchPodIdentitySpec(env: OperatorEnv, name: string, spec: Partial<PodIdentitySpec>): Promise<void> {
  await env.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace: env.namespace, name, body: { spec } }, mergePatch());
}

export async function deletePodIdentity(env: OperatorEnv, name: string): Promise<void> {
  await env.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace: env.namespace, name });
}

export async function applyPolicy(env: OperatorEnv, name: string, spec: Omit<PodIdentityPolicySpec, 'namespaceSelector'>): Promise<void> {
  const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'PodIdentityPolicy', metadata: { name }, spec: { ...spec, namespaceSelector: { matchLabels: env.tenantLabel } } };
  try {
    const existing = (await env.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name })) as { metadata: { resourceVersion: string } };
    await env.custom.replaceClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name, body: { ...body, metadata: { name, resourceVersion: existing.metadata.resourceVersion } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
    await env.custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, body });
  }
}

export async function deletePolicy(env: OperatorEnv, name: string): Promise<void> {
  await env.custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name }).catch(() => undefined);
}

export async function createPod(env: OperatorEnv, name: string, labels: Record<string, string>, opts: { serviceAccountName?: string; nodeName?: string } = {}): Promise<void> {
  const sa = opts.serviceAccountName ?? 'app';
  await env.core.createNamespacedServiceAccount({ namespace: env.namespace, body: { metadata: { name: sa } } }).catch((err: { code?: number }) => {
    if (err.code !== 409) throw err;
  });
  const body: V1Pod = {
    metadata: { name, labels },
    spec: { serviceAccountName: sa, automountServiceAccountToken: false, ...(opts.nodeName ? { nodeName: opts.nodeName } : {}), containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
  };
  await env.core.createNamespacedPod({ namespace: env.namespace, body });
}

export async function deletePod(env: OperatorEnv, name: string): Promise<void> {
  await env.core.deleteNamespacedPod({ name, namespace: env.namespace, gracePeriodSeconds: 0 });
}

export async function createNode(env: OperatorEnv, name: string, providerID: string): Promise<void> {
  await env.core.createNode({ body: { metadata: { name }, spec: { providerID } } });
}

export const condition = (pid: PodIdentity | undefined, type: string) => pid?.status?.conditions?.find((c) => c.type === type);
