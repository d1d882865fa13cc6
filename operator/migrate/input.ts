/**
 * Reads aad-pod-identity (aadpodidentity.k8s.io/v1) objects from multi-document YAML, as written by hand or
 * by `kubectl get azureidentity,azureidentitybinding,azurepodidentityexception -A -o yaml` (a v1 List).
 * Every problem is reported with the document (and List item) it comes from.
 */
import { parseAllDocuments } from 'yaml';

export const AAD_GROUP = 'aadpodidentity.k8s.io';
export const AAD_API_VERSION = `${AAD_GROUP}/v1`;

/** aad-pod-identity's identity types: 0 user-assigned MSI, 1 service principal, 2 service principal with a certificate. */
export const IDENTITY_TYPES = { 0: 'user-assigned managed identity', 1: 'service principal', 2: 'service principal with a certificate' } as const;
export type IdentityType = keyof typeof IDENTITY_TYPES;

/** Where an object came from, for messages: `document 3 (AzureIdentityBinding "x")`. */
export interface Origin {
  /** 1-based document index in the input. */
  document: number;
  /** 1-based item index when the document is a List. */
  item?: number;
  kind: string;
  name: string;
}

export function describeOrigin(o: Pick<Origin, 'document' | 'item'> & Partial<Origin>): string {
  const where = o.item === undefined ? `document ${o.document}` : `document ${o.document}, item ${o.item}`;
  return o.kind ? `${where} (${o.kind}${o.name ? ` "${o.name}"` : ''})` : where;
}

export interface AzureIdentity {
  origin: Origin;
  namespace: string;
  name: string;
  type: IdentityType;
  resourceId?: string;
  clientId?: string;
  /** The `aadpodidentity.k8s.io/Behavior: namespaced` annotation: bindings match pods of this namespace only. */
  namespaced: boolean;
}

export interface AzureIdentityBinding {
  origin: Origin;
  namespace: string;
  name: string;
  identityName: string;
  selector: string;
}

export interface AzurePodIdentityException {
  origin: Origin;
  namespace: string;
  name: string;
  podLabels: Record<string, string>;
}

export interface LegacyObjects {
  identities: AzureIdentity[];
  bindings: AzureIdentityBinding[];
  exceptions: AzurePodIdentityException[];
  /** Documents of other API groups, which the migration leaves out. */
  ignored: Origin[];
}

export class MigrationInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationInputError';
  }
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// Kubernetes label values: at most 63 characters, alphanumeric at both ends, '-', '_' and '.' inside.
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

export function isLabelValue(v: string): boolean {
  return v.length <= 63 && LABEL_VALUE.test(v);
}

/** Parses and validates the input. Throws MigrationInputError naming the document on the first problem. */
export function readLegacyObjects(yamlText: string): LegacyObjects {
  const out: LegacyObjects = { identities: [], bindings: [], exceptions: [], ignored: [] };
  const docs = parseAllDocuments(yamlText);
  docs.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length > 0) {
      throw new MigrationInputError(`document ${document}: not valid YAML: ${doc.errors.map((e) => e.message.split('\n')[0]).join('; ')}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document, e.g. after a trailing ---
    if (!isObject(value)) throw new MigrationInputError(`document ${document}: expected a Kubernetes object (a mapping with apiVersion and kind), got ${Array.isArray(value) ? 'a sequence' : typeof value}`);
    if (value.kind === 'List' && (value.apiVersion === 'v1' || value.apiVersion === undefined)) {
      if (!Array.isArray(value.items)) throw new MigrationInputError(`document ${document} (List): items must be a sequence`);
      value.items.forEach((item: unknown, j: number) => readObject(item, { document, item: j + 1 }, out));
    } else {
      readObject(value, { document }, out);
    }
  });
  return out;
}

function readObject(value: unknown, at: { document: number; item?: number }, out: LegacyObjects): void {
  if (!isObject(value)) throw new MigrationInputError(`${describeOrigin(at)}: expected a Kubernetes object (a mapping with apiVersion and kind)`);
  const kind = typeof value.kind === 'string' ? value.kind : '';
  const apiVersion = typeof value.apiVersion === 'string' ? value.apiVersion : '';
  const metadata = isObject(value.metadata) ? value.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  const origin: Origin = { ...at, kind, name };
  const fail = (message: string): never => {
    throw new MigrationInputError(`${describeOrigin(origin)}: ${message}`);
  };
  if (!apiVersion) fail('apiVersion is required');
  if (!kind) fail('kind is required');
  if (apiVersion.split('/')[0] !== AAD_GROUP) {
    out.ignored.push(origin);
    return;
  }
  if (apiVersion !== AAD_API_VERSION) fail(`apiVersion ${apiVersion} is not supported; expected ${AAD_API_VERSION}`);
  if (!name) fail('metadata.name is required');
  const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : 'default';
  const spec = isObject(value.spec) ? value.spec : fail('spec is required');
  /**
   * A spec field by its v1.6+ name or any other capitalisation. Before 1.6, aad-pod-identity's docs and examples
   * wrote `ResourceID`, `ClientID`, `AzureIdentity`, `Selector`, `PodLabels`, and its MIC accepted them because
   * Go's JSON decoding matches field names case-insensitively. Two spellings with different values are refused:
   * which one aad-pod-identity used depended on their order.
   */
  const field = (name: string): { key: string; value: unknown } => {
    const keys = Object.keys(spec).filter((k) => k.toLowerCase() === name.toLowerCase() && spec[k] !== undefined && spec[k] !== null);
    const [first, ...others] = keys;
    if (first === undefined) return { key: name, value: undefined };
    const differing = others.find((k) => JSON.stringify(spec[k]) !== JSON.stringify(spec[first]));
    if (differing) fail(`spec.${first} and spec.${differing} are the same field (${name}) with different values; keep one`);
    return { key: keys.includes(name) ? name : first, value: spec[first] };
  };
  const optionalString = (name: string): string | undefined => {
    const { key, value: v } = field(name);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') fail(`spec.${key} must be a string`);
    return v as string;
  };
  const requiredString = (name: string): string => optionalString(name) ?? fail(`spec.${name} is required`);

  switch (kind) {
    case 'AzureIdentity': {
      // The Go type's zero value: an omitted type is a user-assigned identity.
      const rawType = field('type').value ?? 0;
      const type = typeof rawType === 'string' && /^[0-2]$/.test(rawType) ? Number(rawType) : rawType;
      if (type !== 0 && type !== 1 && type !== 2) fail(`spec.type ${JSON.stringify(rawType)} is not one of 0 (user-assigned identity), 1 (service principal), 2 (service principal with a certificate)`);
      const annotations = isObject(metadata.annotations) ? metadata.annotations : {};
      const identity: AzureIdentity = {
        origin, namespace, name, type: type as IdentityType,
        namespaced: String(annotations['aadpodidentity.k8s.io/Behavior'] ?? '').toLowerCase() === 'namespaced',
      };
      if (type === 0) {
        identity.resourceId = requiredString('resourceID');
        identity.clientId = requiredString('clientID');
      }
      if (out.identities.some((x) => x.namespace === namespace && x.name === name)) fail(`a second AzureIdentity ${namespace}/${name}`);
      out.identities.push(identity);
      return;
    }
    case 'AzureIdentityBinding': {
      const identityName = requiredString('azureIdentity');
      const selector = requiredString('selector');
      if (!isLabelValue(selector)) fail(`spec.selector ${JSON.stringify(selector)} is not a valid label value, so no pod can carry it as aadpodidbinding`);
      if (out.bindings.some((x) => x.namespace === namespace && x.name === name)) fail(`a second AzureIdentityBinding ${namespace}/${name}`);
      out.bindings.push({ origin, namespace, name, identityName, selector });
      return;
    }
    case 'AzurePodIdentityException': {
      const podLabels = field('podLabels').value;
      if (!isObject(podLabels) || Object.keys(podLabels).length === 0) fail('spec.podLabels is required and must not be empty (an exception for every pod would disable interception)');
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(podLabels as Obj)) {
        if (!LABEL_KEY.test(k)) fail(`spec.podLabels: ${JSON.stringify(k)} is not a valid label key`);
        const s = typeof v === 'number' || typeof v === 'boolean' ? String(v) : v;
        if (typeof s !== 'string' || !isLabelValue(s)) fail(`spec.podLabels.${k}: ${JSON.stringify(v)} is not a valid label value`);
        labels[k] = s as string;
      }
      out.exceptions.push({ origin, namespace, name, podLabels: labels });
      return;
    }
    case 'AzureAssignedIdentity':
      // Runtime state written by aad-pod-identity's MIC, not configuration: nothing to migrate.
      out.ignored.push(origin);
      return;
    default:
      fail(`unknown kind ${kind} in ${AAD_GROUP}; expected AzureIdentity, AzureIdentityBinding or AzurePodIdentityException`);
  }
}
