import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The subscription the samples name; the emulator is seeded with it. */
export const DEMO_SUBSCRIPTION = '00000000-0000-4000-8000-000000000001';

export interface DemoPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  serviceAccount: string;
  /** Index of the simulated node it runs on. */
  nodeIndex: number;
  /** The PodIdentity that should select it. */
  identity: string;
}

/**
 * The first pod is the product's origin story: a program in namespace rgapi, labelled the aad-pod-identity
 * way, that lists resource groups with a token it gets from IMDS. The others run the samples.
 */
export const DEMO_PODS: DemoPod[] = [
  { namespace: 'rgapi', name: 'rgapi', labels: { aadpodidbinding: 'rgapi' }, serviceAccount: 'default', nodeIndex: 0, identity: 'rgapi' },
  { namespace: 'demo', name: 'web', labels: { 'podidentity.dev/identity': 'web' }, serviceAccount: 'web', nodeIndex: 0, identity: 'web' },
  { namespace: 'demo', name: 'batch', labels: { app: 'batch' }, serviceAccount: 'default', nodeIndex: 1, identity: 'batch' },
  { namespace: 'demo', name: 'legacy-app', labels: { aadpodidbinding: 'legacy-app' }, serviceAccount: 'default', nodeIndex: 1, identity: 'legacy-app' },
];

const samplesDir = fileURLToPath(new URL('../../config/samples/', import.meta.url));

/** Namespaces, the default policy, the samples and the origin-story PodIdentity, as one YAML stream. */
export function demoManifests(subscriptionId: string): string {
  const docs = [
    `apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels: {podidentity.dev/tenant: demo}`,
    `apiVersion: v1
kind: Namespace
metadata:
  name: rgapi
  labels: {podidentity.dev/policy: default}`,
    `# The default policy of the local setup: namespaces that opt in may grant Reader or Contributor anywhere
# in the demo subscription.
apiVersion: podidentity.dev/v1alpha1
kind: PodIdentityPolicy
metadata:
  name: default
spec:
  namespaceSelector:
    matchLabels: {podidentity.dev/policy: default}
  allowedRoles: [Reader, Contributor]
  allowedScopes: [/subscriptions/${subscriptionId}]
  allowedModes: [Federated, Node]`,
    `# The origin story: the rgapi program lists resource groups with its pod's identity.
apiVersion: podidentity.dev/v1alpha1
kind: PodIdentity
metadata:
  name: rgapi
  namespace: rgapi
spec:
  identity:
    managed: {}
  selector:
    matchLabels: {aadpodidbinding: rgapi}
  roleAssignments:
    - role: Contributor
      scope: /subscriptions/${subscriptionId}`,
    ...readdirSync(samplesDir)
      .filter((f) => f.endsWith('.yaml'))
      .sort()
      .map((f) => readFileSync(join(samplesDir, f), 'utf8')),
  ];
  return docs.map((d) => d.trim()).join('\n---\n') + '\n';
}
