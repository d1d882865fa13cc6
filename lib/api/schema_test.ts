import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import {
  DELETION_POLICIES,
  MAX_ROLE_ASSIGNMENTS,
  MAX_SERVICE_ACCOUNTS,
  MODES,
  type PodIdentity,
  type PodIdentityPolicy,
} from './types.js';

/**
 * The CRD YAML is the wire contract and lib/api/types.ts is what the code compiles against. These tests
 * prove they describe the same fields: each kind has a fixture typed with every optional field made
 * required, so the compiler rejects a fixture that misses or invents a field, and the test then walks the
 * fixture and the schema together.
 */

type DeepRequired<T> = T extends (infer U)[]
  ? DeepRequired<U>[]
  : T extends string | number | boolean | Date
    ? T
    : T extends object
      ? { [K in keyof T]-?: DeepRequired<T[K]> }
      : T;

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: unknown;
  enum?: unknown[];
  maxItems?: number;
  required?: string[];
  description?: string;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

function crdSchema(file: string): Schema {
  const crd = parse(readFileSync(join(root, 'crds', file), 'utf8')) as {
    spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
  };
  const version = crd.spec.versions[0];
  assert.ok(version, `${file} has a version`);
  return version.schema.openAPIV3Schema;
}

/** Walks schema and value together and returns the mismatched paths, both ways. */
function compare(schema: Schema, value: unknown, path: string, problems: string[]): void {
  if (schema.additionalProperties !== undefined || (schema.type === 'object' && !schema.properties)) return; // maps and opaque objects
  if (schema.type === 'array') {
    assert.ok(Array.isArray(value), `${path} is an array in the fixture`);
    const first = (value as unknown[])[0];
    if (schema.items && first !== undefined) compare(schema.items, first, `${path}[]`, problems);
    return;
  }
  if (!schema.properties) return;
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(schema.properties)) {
    if (!(key in obj)) problems.push(`${path}.${key} is in the CRD but not in the TypeScript type`);
    else compare(schema.properties[key] as Schema, obj[key], `${path}.${key}`, problems);
  }
  for (const key of Object.keys(obj)) {
    if (!(key in schema.properties)) problems.push(`${path}.${key} is in the TypeScript type but not in the CRD`);
  }
}

function everyFieldDescribed(schema: Schema, path: string, missing: string[]): void {
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    if (key !== 'metadata' && !child.description) missing.push(`${path}.${key}`);
    everyFieldDescribed(child, `${path}.${key}`, missing);
  }
  if (schema.items) everyFieldDescribed(schema.items, `${path}[]`, missing);
}

const now = '2026-01-01T00:00:00Z';
const podIdentityFixture: DeepRequired<Omit<PodIdentity, 'metadata'>> & { metadata: object } = {
  apiVersion: 'podidentity.dev/v1alpha1',
  kind: 'PodIdentity',
  metadata: {},
  spec: {
    identity: {
      managed: { name: 'n', resourceGroup: 'rg', location: 'westeurope', tags: { a: 'b' } },
      existing: { resourceId: '/subscriptions/x' },
    },
    roleAssignments: [{ role: 'Reader', scope: '/subscriptions/x' }],
    selector: { matchLabels: { a: 'b' }, matchExpressions: [{ key: 'k', operator: 'In', values: ['v'] }] },
    mode: 'Federated',
    serviceAccounts: ['sa'],
    deletionPolicy: 'Delete',
  },
  status: {
    observedGeneration: 1,
    mode: 'Node',
    clientId: 'c',
    principalId: 'p',
    tenantId: 't',
    resourceId: 'r',
    roleAssignments: [{ role: 'Reader', scope: '/s', roleDefinitionId: 'd', id: 'i', state: 'Assigned', message: 'm' }],
    federatedCredentials: [{ name: 'n', issuer: 'i', subject: 's', lastWriteTime: now }],
    firstSuccessfulExchange: { time: now, node: 'n' },
    nodeAssignments: [{ scaleSet: 's', nodes: ['n'], state: 'Assigned' }],
    conditions: [{ type: 'Ready', status: 'True', reason: 'R', message: 'm', lastTransitionTime: now, observedGeneration: 1 }],
  },
};

const policyFixture: DeepRequired<Omit<PodIdentityPolicy, 'metadata'>> & { metadata: object } = {
  apiVersion: 'podidentity.dev/v1alpha1',
  kind: 'PodIdentityPolicy',
  metadata: {},
  spec: {
    namespaceSelector: { matchLabels: { a: 'b' }, matchExpressions: [{ key: 'k', operator: 'Exists', values: [] }] },
    allowedRoles: ['Reader'],
    allowedScopes: ['/subscriptions/*'],
    allowedExistingIdentities: ['/subscriptions/*'],
    allowedModes: ['Node'],
  },
};

test('PodIdentity: the TypeScript type and the CRD schema have the same fields', () => {
  const problems: string[] = [];
  compare(crdSchema('podidentity.dev_podidentities.yaml'), podIdentityFixture, 'PodIdentity', problems);
  assert.deepEqual(problems, []);
});

test('PodIdentityPolicy: the TypeScript type and the CRD schema have the same fields', () => {
  const problems: string[] = [];
  compare(crdSchema('podidentity.dev_podidentitypolicies.yaml'), policyFixture, 'PodIdentityPolicy', problems);
  assert.deepEqual(problems, []);
});

test('enums and limits in the CRD match the TypeScript constants', () => {
  const spec = crdSchema('podidentity.dev_podidentities.yaml').properties?.['spec']?.properties ?? {};
  assert.deepEqual(spec['mode']?.enum, [...MODES]);
  assert.deepEqual(spec['deletionPolicy']?.enum, [...DELETION_POLICIES]);
  assert.equal(spec['roleAssignments']?.maxItems, MAX_ROLE_ASSIGNMENTS);
  assert.equal(spec['serviceAccounts']?.maxItems, MAX_SERVICE_ACCOUNTS);
  const policy = crdSchema('podidentity.dev_podidentitypolicies.yaml').properties?.['spec']?.properties ?? {};
  assert.deepEqual(policy['allowedModes']?.items?.enum, [...MODES]);
});

test('every field has a description, so kubectl explain teaches the API', () => {
  for (const file of ['podidentity.dev_podidentities.yaml', 'podidentity.dev_podidentitypolicies.yaml']) {
    const missing: string[] = [];
    everyFieldDescribed(crdSchema(file), file, missing);
    assert.deepEqual(missing, [], `fields without description in ${file}`);
  }
});

test('every sample round-trips through the TypeScript types and matches the schema', () => {
  const dir = join(root, 'config', 'samples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 4, 'at least four samples');
  const kinds = new Set<string>();
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const obj = doc.toJS() as PodIdentity | PodIdentityPolicy | { kind: string };
      kinds.add(obj.kind);
      if (obj.kind !== 'PodIdentity' && obj.kind !== 'PodIdentityPolicy') continue;
      const schema = crdSchema(obj.kind === 'PodIdentity' ? 'podidentity.dev_podidentities.yaml' : 'podidentity.dev_podidentitypolicies.yaml');
      const problems: string[] = [];
      compareKnown(schema, obj, `${file}`, problems);
      assert.deepEqual(problems, [], file);
      assert.deepEqual(JSON.parse(JSON.stringify(obj)), obj, `${file} survives JSON`);
    }
  }
  assert.ok(kinds.has('PodIdentity') && kinds.has('PodIdentityPolicy'));
});

/** Every field a sample sets must exist in the schema (the API server would prune unknown fields). */
function compareKnown(schema: Schema, value: unknown, path: string, problems: string[]): void {
  if (schema.additionalProperties !== undefined || (schema.type === 'object' && !schema.properties)) return;
  if (Array.isArray(value)) {
    for (const item of value) if (schema.items) compareKnown(schema.items, item, `${path}[]`, problems);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, child] of Object.entries(value)) {
    const sub = schema.properties?.[key];
    if (!sub) problems.push(`${path}.${key} is not in the schema`);
    else compareKnown(sub, child, `${path}.${key}`, problems);
  }
}
