/**
 * aad-pod-identity → PodIdentity. Each user-assigned AzureIdentity with its AzureIdentityBindings becomes one
 * PodIdentity that adopts the same Azure identity (`existing`, deletionPolicy Retain: the identity was not
 * created by this operator and must survive it) and selects the same pods (label `aadpodidbinding`), so pods
 * and their labels do not change. AzurePodIdentityExceptions become one explicit, commented ConfigMap.
 */
import { Document, stringify } from 'yaml';
import { API_VERSION, PODIDENTITY_KIND, type Mode, type PodIdentity } from '../../lib/api/types.js';
import {
  describeOrigin, IDENTITY_TYPES, MigrationInputError, readLegacyObjects,
  type AzureIdentity, type AzureIdentityBinding, type AzurePodIdentityException,
} from './input.js';

export { MigrationInputError } from './input.js';

/** The pod label aad-pod-identity matched a binding's `selector` against. */
export const AAD_POD_LABEL = 'aadpodidbinding';
/** Where the PodIdentity came from, e.g. `AzureIdentity default/app, AzureIdentityBinding default/app-binding`. */
export const MIGRATED_FROM_ANNOTATION = 'podidentity.dev/migrated-from';
/** The clientID the AzureIdentity declared; the operator reads the real one from Azure into status.clientId. */
export const MIGRATED_CLIENT_ID_ANNOTATION = 'podidentity.dev/migrated-client-id';
/** The ConfigMap that carries migrated AzurePodIdentityExceptions (see README "Exceptions"). */
export const EXCEPTIONS_CONFIGMAP = { namespace: 'podidentity-system', name: 'podidentity-imds-exceptions', key: 'exceptions.yaml' } as const;

// The CRD's pattern for spec.identity.existing.resourceId (crds/podidentity.dev_podidentities.yaml).
const USER_ASSIGNED_ID = /^\/subscriptions\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/resourceGroups\/[-\w._()]{1,90}\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[A-Za-z0-9][A-Za-z0-9_-]{2,127}$/i;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface MigrateOptions {
  /** Node (default: what aad-pod-identity did, the identity on the nodes' scale sets) or Federated. */
  mode?: Mode;
}

export interface MigrateResult {
  /** Multi-document YAML: PodIdentities, then the exceptions ConfigMap, then one suggested policy per namespace (commented). */
  output: string;
  /** What could not be carried over, or needs a human decision. */
  warnings: string[];
  /** The PodIdentities written, for callers that want objects. */
  podIdentities: PodIdentity[];
}

export interface MigratedException {
  namespace: string;
  podLabels: Record<string, string>;
  migratedFrom: string;
}

/** Throws MigrationInputError (message names the document) on input it can't read. */
export function migrate(yamlText: string, options: MigrateOptions = {}): MigrateResult {
  const mode: Mode = options.mode ?? 'Node';
  const legacy = readLegacyObjects(yamlText);
  const warnings: string[] = [];
  const key = (namespace: string, name: string) => `${namespace}/${name}`;
  const identities = new Map(legacy.identities.map((i) => [key(i.namespace, i.name), i]));

  const bindingsByIdentity = new Map<string, AzureIdentityBinding[]>();
  for (const b of legacy.bindings) {
    const identity = identities.get(key(b.namespace, b.identityName));
    if (!identity) {
      warnings.push(`${describeOrigin(b.origin)}: skipped: its AzureIdentity "${b.identityName}" is not in namespace ${b.namespace} of the input; include it to migrate this binding`);
      continue;
    }
    const list = bindingsByIdentity.get(key(identity.namespace, identity.name)) ?? [];
    list.push(b);
    bindingsByIdentity.set(key(identity.namespace, identity.name), list);
  }

  const podIdentities: PodIdentity[] = [];
  const sources = new Map<PodIdentity, AzureIdentity>();
  for (const identity of legacy.identities) {
    const bindings = bindingsByIdentity.get(key(identity.namespace, identity.name)) ?? [];
    if (identity.type !== 0) {
      const via = bindings.length > 0 ? ` (bound by ${bindings.map((b) => `"${b.name}"`).join(', ')})` : '';
      warnings.push(
        `${describeOrigin(identity.origin)}: skipped: type ${identity.type} (${IDENTITY_TYPES[identity.type]}) can't be carried over${via}. ` +
        'PodIdentity gives pods user-assigned managed identities only, never a secret or certificate: create a user-assigned identity with the same role assignments and describe it with a PodIdentity',
      );
      continue;
    }
    if (bindings.length === 0) {
      warnings.push(`${describeOrigin(identity.origin)}: skipped: no AzureIdentityBinding refers to it, so no pod used it; include its bindings in the input to migrate it`);
      continue;
    }
    const resourceId = identity.resourceId ?? '';
    if (!USER_ASSIGNED_ID.test(resourceId)) {
      throw new MigrationInputError(`${describeOrigin(identity.origin)}: spec.resourceID ${JSON.stringify(resourceId)} is not a user-assigned identity resource id (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)`);
    }
    if (!GUID.test(identity.clientId ?? '')) {
      throw new MigrationInputError(`${describeOrigin(identity.origin)}: spec.clientID ${JSON.stringify(identity.clientId)} is not a GUID`);
    }
    const selectors = [...new Set(bindings.map((b) => b.selector))].sort();
    const pid: PodIdentity = {
      apiVersion: API_VERSION,
      kind: PODIDENTITY_KIND,
      metadata: {
        name: identity.name,
        namespace: identity.namespace,
        annotations: {
          [MIGRATED_FROM_ANNOTATION]: [`AzureIdentity ${key(identity.namespace, identity.name)}`, ...bindings.map((b) => `AzureIdentityBinding ${key(b.namespace, b.name)}`)].join(', '),
          [MIGRATED_CLIENT_ID_ANNOTATION]: identity.clientId ?? '',
        },
      },
      spec: {
        identity: { existing: { resourceId } },
        mode,
        // One binding: the exact label aad-pod-identity matched. Several bindings with different selectors:
        // any of them, as aad-pod-identity matched each binding separately.
        selector: selectors.length === 1
          ? { matchLabels: { [AAD_POD_LABEL]: selectors[0] as string } }
          : { matchExpressions: [{ key: AAD_POD_LABEL, operator: 'In', values: selectors }] },
        deletionPolicy: 'Retain',
      },
    };
    podIdentities.push(pid);
    sources.set(pid, identity);
  }

  const clusterWide = podIdentities.filter((p) => !sources.get(p)?.namespaced);
  if (clusterWide.length > 0) {
    warnings.push(
      `a PodIdentity selects pods in its own namespace only, while aad-pod-identity (without --forceNamespaced or the "aadpodidentity.k8s.io/Behavior: namespaced" annotation) matched a binding's selector in every namespace: ` +
      `if pods labelled ${AAD_POD_LABEL}=<selector> run outside the namespace of ${clusterWide.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(', ')}, copy the PodIdentity into their namespaces`,
    );
  }

  const exceptions: MigratedException[] = legacy.exceptions.map((e: AzurePodIdentityException) => ({
    namespace: e.namespace,
    podLabels: e.podLabels,
    migratedFrom: `AzurePodIdentityException ${key(e.namespace, e.name)}`,
  }));
  if (exceptions.length > 0) {
    warnings.push(
      `${exceptions.length} AzurePodIdentityException(s) written to ConfigMap ${EXCEPTIONS_CONFIGMAP.namespace}/${EXCEPTIONS_CONFIGMAP.name}: the pods they match reach the node's own IMDS and with it every identity assigned to the node. Review each one before applying`,
    );
  }
  for (const o of legacy.ignored) warnings.push(`${describeOrigin(o)}: ignored: not an aad-pod-identity configuration object`);
  if (podIdentities.length > 0) {
    warnings.push('adopting existing identities needs a PodIdentityPolicy that allows them; the output ends with suggested ones (one per namespace, allowing only its own identities), commented out, for a cluster admin to review');
  }

  return { output: render(podIdentities, exceptions, mode), warnings, podIdentities };
}

function render(podIdentities: PodIdentity[], exceptions: MigratedException[], mode: Mode): string {
  const docs: Document[] = [];
  const sorted = [...podIdentities].sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  sorted.forEach((pid, i) => {
    const doc = new Document(pid);
    const lines = [
      ` Migrated from aad-pod-identity: ${pid.metadata.annotations?.[MIGRATED_FROM_ANNOTATION] ?? ''}.`,
      ` The existing identity is adopted and never deleted (deletionPolicy Retain). Pods keep their ${AAD_POD_LABEL} label.`,
      mode === 'Node'
        ? ' Node mode: the operator assigns the identity to the scale sets of nodes that run selected pods, as aad-pod-identity did.'
        : " Federated mode: the operator adds a federated credential per service account of selected pods; no scale-set assignment.",
    ];
    if (i === 0) lines.unshift(' Generated by `pod-identity migrate`. Apply after installing pod-identity-operator; see operator/migrate/README.md.', '');
    doc.commentBefore = lines.join('\n');
    docs.push(doc);
  });
  if (exceptions.length > 0) {
    const configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: EXCEPTIONS_CONFIGMAP.name, namespace: EXCEPTIONS_CONFIGMAP.namespace, labels: { 'app.kubernetes.io/part-of': 'pod-identity' } },
      data: { [EXCEPTIONS_CONFIGMAP.key]: stringify({ exceptions }) },
    };
    const doc = new Document(configMap);
    doc.commentBefore = [
      ' Migrated AzurePodIdentityExceptions. Maps to: pods in `namespace` whose labels include every `podLabels`',
      " entry are NOT served a pod identity; the node agent passes their IMDS requests through to the node's real",
      " IMDS, so they get the node's own identities (kubelet, add-ons), exactly what an AzurePodIdentityException did.",
      ' The agent reads and watches this ConfigMap through the Kubernetes API (no mount, no restart) when started with',
      ` --exceptions-configmap=${EXCEPTIONS_CONFIGMAP.namespace}/${EXCEPTIONS_CONFIGMAP.name}, as the shipped DaemonSet is; its Role may read this one ConfigMap.`,
      ' Without the flag, while this ConfigMap is absent, or if any entry is malformed, these pods are refused like any',
      ' pod without a PodIdentity (fail closed). Keep the list short: each entry hands the node\'s identities to those pods.',
    ].join('\n');
    docs.push(doc);
  }
  let text = docs.map((d) => d.toString({ lineWidth: 0 })).join('---\n');
  if (podIdentities.length > 0) text += suggestedPolicy(sorted);
  return text;
}

/**
 * One PodIdentityPolicy per namespace, each allowing only the identities that namespace's own PodIdentities
 * adopt, as YAML comments: granting them is an admin's call. One policy for all namespaces would let every
 * migrated namespace adopt every migrated identity.
 */
function suggestedPolicy(podIdentities: PodIdentity[]): string {
  const byNamespace = new Map<string, PodIdentity[]>();
  for (const p of podIdentities) {
    const ns = p.metadata.namespace ?? 'default';
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), p]);
  }
  const bodies = [...byNamespace.keys()].sort().map((ns) => {
    const own = byNamespace.get(ns) ?? [];
    const policy = new Document({
      apiVersion: API_VERSION,
      kind: 'PodIdentityPolicy',
      metadata: { name: `migrated-from-aad-pod-identity-${ns}` },
      spec: {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        allowedExistingIdentities: [...new Set(own.map((p) => p.spec.identity.existing?.resourceId ?? ''))].sort(),
        allowedModes: [...new Set(own.map((p) => p.spec.mode ?? 'Node'))],
      },
    });
    return policy.toString({ lineWidth: 0 }).trimEnd().split('\n').map((l) => `# ${l}`).join('\n');
  });
  return [
    '---',
    '# Suggested PodIdentityPolicies (review, uncomment and apply as a cluster admin): one per namespace above, each',
    '# adopting exactly that namespace\'s identities. Role assignments made outside Kubernetes stay as they are.',
    bodies.join('\n# ---\n'),
    '',
  ].join('\n');
}
