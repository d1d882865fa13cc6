import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parsePathPattern, parseScope } from './arm-id.js';

/**
 * The CRD patterns are the first line against non-canonical ids (the operator re-checks every id, for old CRDs
 * and direct etcd writes). They are RE2; the JavaScript engine reads the same syntax (including `(?i:…)`), so
 * this checks them against the parser on the attack table quickly. e2e/crd proves them on the API server.
 */
type Node = { pattern?: string; properties?: Record<string, Node>; items?: Node };
const crd = (file: string) => parse(readFileSync(fileURLToPath(new URL(`../../crds/${file}`, import.meta.url)), 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: Node } }[] } };
const spec = (file: string) => crd(file).spec.versions[0]!.schema.openAPIV3Schema.properties!['spec']!;
const pid = spec('podidentity.dev_podidentities.yaml');
const policy = spec('podidentity.dev_podidentitypolicies.yaml');
const re = (n: Node | undefined) => new RegExp(n!.pattern!);
const SCOPE = re(pid.properties!['roleAssignments']!.items!.properties!['scope']);
const GLOB = re(policy.properties!['allowedScopes']!.items);
const SUB = '00000000-0000-4000-8000-000000000001';
const RG = (n: string) => `/subscriptions/${SUB}/resourceGroups/${n}`;

describe('CRD patterns reject what the parser rejects', () => {
  const scopes = [
    `${RG('team-a')}/providers/../../..`,
    `${RG('team-a')}/providers/../../../resourceGroups/prod`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/..`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/%2e%2e`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/.\t.`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/a b`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/a\\..`,
    `${RG('team-a')}/providers/Microsoft.Storage/storageAccounts/x/`,
    `${RG('team-a')}//providers/Microsoft.Storage/storageAccounts/x`,
    `${RG('..')}`,
    `${RG('.')}/providers/Microsoft.Storage/storageAccounts/x`,
    `${RG('team-a')}/providers/./storageAccounts/x`,
    `${RG('team-a')}/providers/Microsoft.Storage/../x`,
  ];
  for (const s of scopes) {
    it(`scope ${JSON.stringify(s)}`, () => {
      assert.equal(parseScope(s).ok, false, 'parser');
      assert.equal(SCOPE.test(s), false, 'CRD pattern');
    });
  }
  for (const s of [RG('team-a'), `/subscriptions/${SUB}`, `${RG('a')}/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default`, '/providers/Microsoft.Management/managementGroups/mg']) {
    it(`both accept ${s}`, () => {
      assert.ok(parseScope(s).ok);
      assert.ok(SCOPE.test(s));
    });
  }
  for (const g of [`${RG('team-a')}/..`, `${RG('team-a')}/../**`, `${RG('.')}`, `${RG('a')}/`, `${RG('a')}/**/x`]) {
    it(`policy glob ${g}`, () => {
      assert.equal(parsePathPattern(g).ok, false, 'parser');
      assert.equal(GLOB.test(g), false, 'CRD pattern');
    });
  }
});
