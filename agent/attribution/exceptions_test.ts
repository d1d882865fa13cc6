import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EXCEPTIONS_KEY, exceptionsFromConfigMap, matchException, parseConfigMapRef, parseExceptions, type ImdsException } from './exceptions.js';

// What operator/migrate writes (comment included).
const MIGRATED = `# Migrated AzurePodIdentityExceptions.
exceptions:
  - namespace: kube-system
    podLabels: { component: cloud-node-manager }
    migratedFrom: AzurePodIdentityException kube-system/node-addons
  - namespace: monitoring
    podLabels:
      app: exporter
      tier: "1"
`;

function entries(text: string): ImdsException[] {
  const parsed = parseExceptions(text);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.problem);
  return parsed.entries;
}

function problem(text: string): string {
  const parsed = parseExceptions(text);
  assert.equal(parsed.ok, false, `should be refused: ${text}`);
  return parsed.ok ? '' : parsed.problem;
}

describe('IMDS exceptions: parsing', () => {
  test('the migration’s document parses into entries', () => {
    assert.deepEqual(entries(MIGRATED), [
      { namespace: 'kube-system', podLabels: { component: 'cloud-node-manager' }, migratedFrom: 'AzurePodIdentityException kube-system/node-addons' },
      { namespace: 'monitoring', podLabels: { app: 'exporter', tier: '1' } },
    ]);
  });

  test('empty document or empty list: no exceptions, not an error', () => {
    assert.deepEqual(entries(''), []);
    assert.deepEqual(entries('exceptions: []\n'), []);
    assert.deepEqual(entries('exceptions:\n'), []);
  });

  test('anything malformed means no exceptions at all, with the problem named', () => {
    assert.match(problem('exceptions: [\n'), /not valid YAML/);
    assert.match(problem('exceptions: {}\n'), /must be a list/);
    assert.match(problem('- namespace: a\n'), /must be a mapping/);
    assert.match(problem('exception: []\n'), /unknown top-level field "exception"/);
    assert.match(problem('exceptions: []\n---\nexceptions: []\n'), /not valid YAML/);
    // One bad entry poisons the whole list (fail closed), even next to a good one.
    const withBad = `${MIGRATED}  - namespace: other\n`;
    assert.match(problem(withBad), /exceptions\[2\]\.podLabels must be a non-empty mapping/);
    assert.match(problem('exceptions:\n  - namespace: a\n    podLabels: {}\n'), /non-empty/);
    assert.match(problem('exceptions:\n  - podLabels: { a: b }\n'), /exceptions\[0\]\.namespace/);
    assert.match(problem('exceptions:\n  - namespace: Kube_System\n    podLabels: { a: b }\n'), /namespace/);
    assert.match(problem('exceptions:\n  - namespace: a\n    podLabels: { version: 1 }\n'), /podLabels\.version: 1 is not a valid label value/);
    assert.match(problem('exceptions:\n  - namespace: a\n    podLabels: { "bad key!": b }\n'), /not a valid label key/);
    assert.match(problem('exceptions:\n  - namespace: a\n    podLabel: { a: b }\n'), /unknown field "podLabel"/);
    assert.match(problem('exceptions:\n  - namespace: a\n    podLabels: { a: b, a: c }\n'), /not valid YAML/);
    assert.match(problem('exceptions:\n  - just-a-string\n'), /exceptions\[0\] is not a mapping/);
  });

  test('the ConfigMap must carry the exceptions.yaml key', () => {
    assert.equal(EXCEPTIONS_KEY, 'exceptions.yaml', 'the key operator/migrate writes (e2e/deploy/manifests_e2e.ts checks both sides)');
    assert.equal(exceptionsFromConfigMap(undefined).ok, false);
    assert.equal(exceptionsFromConfigMap({ 'exceptions.yml': MIGRATED }).ok, false);
    assert.equal(exceptionsFromConfigMap({ 'exceptions.yaml': MIGRATED }).ok, true);
  });
});

describe('IMDS exceptions: matching', () => {
  const list = entries(MIGRATED);

  test('same namespace and every label equal: matches (extra pod labels are fine)', () => {
    assert.equal(matchException(list, { namespace: 'kube-system', labels: { component: 'cloud-node-manager', 'pod-template-hash': 'x' } })?.namespace, 'kube-system');
    assert.equal(matchException(list, { namespace: 'monitoring', labels: { app: 'exporter', tier: '1' } })?.namespace, 'monitoring');
  });

  test('a label missing or different: no match', () => {
    assert.equal(matchException(list, { namespace: 'kube-system', labels: { component: 'cloud-node-manager2' } }), undefined);
    assert.equal(matchException(list, { namespace: 'monitoring', labels: { app: 'exporter' } }), undefined);
    assert.equal(matchException(list, { namespace: 'kube-system', labels: {} }), undefined);
  });

  test('the same labels in another namespace: no match', () => {
    assert.equal(matchException(list, { namespace: 'app', labels: { component: 'cloud-node-manager' } }), undefined);
  });

  test('inherited properties are not labels', () => {
    const weird: ImdsException[] = [{ namespace: 'a', podLabels: { constructor: 'x' } }];
    assert.equal(matchException(weird, { namespace: 'a', labels: {} }), undefined);
  });
});

describe('--exceptions-configmap value', () => {
  test('<namespace>/<name> only', () => {
    assert.deepEqual(parseConfigMapRef('podidentity-system/podidentity-imds-exceptions'), { namespace: 'podidentity-system', name: 'podidentity-imds-exceptions' });
    for (const bad of ['x', 'a/b/c', '/b', 'a/', 'A/b', 'a/B']) assert.equal(parseConfigMapRef(bad), undefined, bad);
  });
});
