import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import type { PodIdentity } from '../../lib/api/types.js';
import { EXCEPTIONS_CONFIGMAP, MIGRATED_CLIENT_ID_ANNOTATION, MIGRATED_FROM_ANNOTATION, migrate, MigrationInputError } from './migrate.js';
import { runMigrate } from './main.js';

const SUB = '00000000-0000-4000-8000-000000000001';
const idOf = (name: string) => `/subscriptions/${SUB}/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
const CLIENT = '11111111-2222-4333-8444-555555555555';

function identity(name: string, ns = 'apps', extra: Record<string, unknown> = {}, annotations?: Record<string, string>): string {
  return [
    'apiVersion: aadpodidentity.k8s.io/v1',
    'kind: AzureIdentity',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${ns}`,
    ...(annotations ? ['  annotations:', ...Object.entries(annotations).map(([k, v]) => `    ${k}: ${v}`)] : []),
    'spec:',
    ...Object.entries({ type: 0, resourceID: idOf(name), clientID: CLIENT, ...extra }).filter(([, v]) => v !== undefined).map(([k, v]) => `  ${k}: ${v}`),
  ].join('\n');
}

function binding(name: string, identityName: string, selector: string | undefined, ns = 'apps'): string {
  return [
    'apiVersion: aadpodidentity.k8s.io/v1',
    'kind: AzureIdentityBinding',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${ns}`,
    'spec:',
    `  azureIdentity: ${identityName}`,
    ...(selector === undefined ? [] : [`  selector: ${selector}`]),
  ].join('\n');
}

const exception = [
  'apiVersion: aadpodidentity.k8s.io/v1',
  'kind: AzurePodIdentityException',
  'metadata:',
  '  name: node-addons',
  '  namespace: kube-system',
  'spec:',
  '  podLabels:',
  '    component: cloud-node-manager',
  '    tier: node',
].join('\n');

const docs = (...parts: string[]) => parts.join('\n---\n');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function objectsOf(output: string): any[] {
  return parseAllDocuments(output).map((d) => {
    assert.equal(d.errors.length, 0, String(d.errors[0]));
    return d.toJS();
  }).filter((o) => o !== null);
}

function errorOf(input: string): string {
  try {
    migrate(input);
  } catch (err) {
    assert.ok(err instanceof MigrationInputError, `a MigrationInputError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('migrate accepted bad input');
}

describe('migrate: representative inputs', () => {
  test('a multi-document file: identities, bindings, an exception, foreign and empty documents', () => {
    const input = docs(
      identity('orders'),
      binding('orders-binding', 'orders', 'orders'),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\nspec: {}',
      identity('billing', 'finance'),
      binding('billing-binding', 'billing', 'billing-v2', 'finance'),
      exception,
      '',
    );
    const { output, warnings, podIdentities } = migrate(input);
    const objects = objectsOf(output);
    assert.deepEqual(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`), [
      'PodIdentity apps/orders',
      'PodIdentity finance/billing',
      `ConfigMap ${EXCEPTIONS_CONFIGMAP.namespace}/${EXCEPTIONS_CONFIGMAP.name}`,
    ]);
    const orders = objects[0] as PodIdentity;
    assert.deepEqual(orders.spec, {
      identity: { existing: { resourceId: idOf('orders') } },
      mode: 'Node',
      selector: { matchLabels: { aadpodidbinding: 'orders' } },
      deletionPolicy: 'Retain',
    });
    assert.equal(orders.metadata.annotations?.[MIGRATED_CLIENT_ID_ANNOTATION], CLIENT);
    assert.equal(orders.metadata.annotations?.[MIGRATED_FROM_ANNOTATION], 'AzureIdentity apps/orders, AzureIdentityBinding apps/orders-binding');
    assert.deepEqual((objects[1] as PodIdentity).spec.selector, { matchLabels: { aadpodidbinding: 'billing-v2' } }, 'the selector string, exactly');
    assert.equal(podIdentities.length, 2);

    const exceptions = parse(objects[2].data[EXCEPTIONS_CONFIGMAP.key]);
    assert.deepEqual(exceptions, {
      exceptions: [{ namespace: 'kube-system', podLabels: { component: 'cloud-node-manager', tier: 'node' }, migratedFrom: 'AzurePodIdentityException kube-system/node-addons' }],
    });
    assert.match(output, /Maps to: pods in `namespace` whose labels include every `podLabels`/);
    assert.ok(warnings.some((w) => w.startsWith('document 3 (Deployment "orders"): ignored')), warnings.join('\n'));
    assert.ok(warnings.some((w) => /AzurePodIdentityException.*podidentity-imds-exceptions.*node's own IMDS/.test(w)));
    assert.ok(warnings.some((w) => /every namespace.*apps\/orders, finance\/billing/.test(w)), 'the cluster-wide matching difference is called out');
  });

  test('the suggested policy is commented out and allows exactly the adopted identities', () => {
    const { output } = migrate(docs(identity('orders'), binding('b', 'orders', 'orders')));
    const tail = output.slice(output.lastIndexOf('---'));
    assert.match(tail, /^# kind: PodIdentityPolicy$/m);
    const policy = parse(tail.split('\n').filter((l) => l.startsWith('# ') && !/^# (Suggested|adopt|identities)/.test(l)).map((l) => l.slice(2)).join('\n'));
    assert.deepEqual(policy.spec.allowedExistingIdentities, [idOf('orders')]);
    assert.deepEqual(policy.spec.namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'apps' });
    assert.equal(objectsOf(output).filter((o) => o.kind === 'PodIdentityPolicy').length, 0, 'never applied by accident');
  });

  test('migration policy too broad: one suggested policy per namespace, each allowing only that namespace\'s own identities', () => {
    const { output } = migrate(docs(identity('orders'), binding('b', 'orders', 'orders'), identity('billing', 'finance'), binding('b2', 'billing', 'billing', 'finance')));
    const tail = output.slice(output.indexOf('# Suggested'));
    const policies = tail
      .split(/^# ---$/m)
      .map((chunk) => chunk.split('\n').filter((l) => l.startsWith('# ') && !/^# (Suggested|adopt|identities)/.test(l)).map((l) => l.slice(2)).join('\n'))
      .filter((yaml) => /kind: PodIdentityPolicy/.test(yaml))
      .map((yaml) => parse(yaml));
    assert.equal(policies.length, 2, 'one policy per namespace');
    const byNs = new Map(policies.map((p) => [p.spec.namespaceSelector.matchLabels['kubernetes.io/metadata.name'], p]));
    assert.deepEqual(byNs.get('apps')?.spec.allowedExistingIdentities, [idOf('orders')]);
    assert.deepEqual(byNs.get('finance')?.spec.allowedExistingIdentities, [idOf('billing')]);
    assert.notEqual(byNs.get('apps')?.metadata.name, byNs.get('finance')?.metadata.name);
  });

  test('--mode Federated', () => {
    const { podIdentities, output } = migrate(docs(identity('orders'), binding('b', 'orders', 'orders')), { mode: 'Federated' });
    assert.equal(podIdentities[0]?.spec.mode, 'Federated');
    assert.match(output, /Federated mode: the operator adds a federated credential/);
  });

  test('several bindings for one identity select any of their labels', () => {
    const { podIdentities } = migrate(docs(identity('orders'), binding('b1', 'orders', 'orders-web'), binding('b2', 'orders', 'orders-api'), binding('b3', 'orders', 'orders-web')));
    assert.equal(podIdentities.length, 1);
    assert.deepEqual(podIdentities[0]?.spec.selector, { matchExpressions: [{ key: 'aadpodidbinding', operator: 'In', values: ['orders-api', 'orders-web'] }] });
  });

  test('a v1 List, as `kubectl get azureidentity,azureidentitybinding -o yaml` prints it', () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [parse(identity('orders')), parse(binding('b', 'orders', 'orders'))],
    };
    const { podIdentities } = migrate(JSON.stringify(list));
    assert.equal(podIdentities[0]?.metadata.name, 'orders');
  });

  test('an omitted type is a user-assigned identity (aad-pod-identity\'s default), and the default namespace is "default"', () => {
    const input = docs(identity('orders', 'apps', { type: undefined }).replace('  namespace: apps\n', ''), binding('b', 'orders', 'orders').replace('  namespace: apps\n', ''));
    assert.equal(migrate(input).podIdentities[0]?.metadata.namespace, 'default');
  });
});

describe('migrate: warnings for what is not carried over', () => {
  test('service principals (types 1 and 2) are skipped with a warning', () => {
    const sp = (name: string, type: number) => identity(name, 'apps', { type, resourceID: undefined, clientID: CLIENT, tenantID: 'tenant' });
    const { warnings, podIdentities } = migrate(docs(sp('sp', 1), binding('sp-b', 'sp', 'sp'), sp('cert', 2)));
    assert.equal(podIdentities.length, 0);
    assert.ok(warnings.includes(warnings.find((w) => w.startsWith('document 1 (AzureIdentity "sp"): skipped: type 1 (service principal) can\'t be carried over (bound by "sp-b")')) ?? ''), warnings.join('\n'));
    assert.ok(warnings.some((w) => w.startsWith('document 3 (AzureIdentity "cert"): skipped: type 2 (service principal with a certificate)')), warnings.join('\n'));
    assert.ok(!warnings.some((w) => w.includes('sp-b') && w.includes('is not in')), 'no second warning for the binding of a skipped identity');
  });

  test('a binding whose identity is missing', () => {
    const { warnings, output } = migrate(binding('orphan', 'ghost', 'ghost'));
    assert.ok(warnings.some((w) => w === 'document 1 (AzureIdentityBinding "orphan"): skipped: its AzureIdentity "ghost" is not in namespace apps of the input; include it to migrate this binding'), warnings.join('\n'));
    assert.equal(objectsOf(output).length, 0);
  });

  test('a binding in another namespace does not bind the identity', () => {
    const { warnings, podIdentities } = migrate(docs(identity('orders', 'apps'), binding('b', 'orders', 'orders', 'other')));
    assert.equal(podIdentities.length, 0);
    assert.ok(warnings.some((w) => w.startsWith('document 2 (AzureIdentityBinding "b"): skipped')));
    assert.ok(warnings.some((w) => w.startsWith('document 1 (AzureIdentity "orders"): skipped: no AzureIdentityBinding refers to it')));
  });

  test('an identity without bindings', () => {
    const { warnings } = migrate(identity('lonely'));
    assert.deepEqual(warnings, ['document 1 (AzureIdentity "lonely"): skipped: no AzureIdentityBinding refers to it, so no pod used it; include its bindings in the input to migrate it']);
  });

  test('namespaced identities need no cross-namespace warning', () => {
    const { warnings } = migrate(docs(identity('orders', 'apps', {}, { 'aadpodidentity.k8s.io/Behavior': 'namespaced' }), binding('b', 'orders', 'orders')));
    assert.ok(!warnings.some((w) => w.includes('every namespace')), warnings.join('\n'));
  });
});

describe('migrate: bad input gets a clear error with the document index', () => {
  const cases: [string, string, RegExp | string][] = [
    ['not YAML', `${identity('a')}\n---\nkind: [unclosed`, /^document 2: not valid YAML: /],
    ['a scalar document', `${identity('a')}\n---\njust text`, 'document 2: expected a Kubernetes object (a mapping with apiVersion and kind), got string'],
    ['a binding without a selector', docs(identity('a'), identity('b'), binding('x', 'a', undefined)), 'document 3 (AzureIdentityBinding "x"): spec.selector is required'],
    ['a binding without azureIdentity', binding('x', '', 'sel'), 'document 1 (AzureIdentityBinding "x"): spec.azureIdentity is required'],
    ['a selector no label can carry', binding('x', 'a', '"has spaces"'), /^document 1 \(AzureIdentityBinding "x"\): spec\.selector "has spaces" is not a valid label value/],
    ['an unknown kind in the group', 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityMagic\nmetadata: {name: m}\nspec: {}', 'document 1 (AzureIdentityMagic "m"): unknown kind AzureIdentityMagic in aadpodidentity.k8s.io; expected AzureIdentity, AzureIdentityBinding or AzurePodIdentityException'],
    ['another version of the group', 'apiVersion: aadpodidentity.k8s.io/v2\nkind: AzureIdentity\nmetadata: {name: m}\nspec: {}', /^document 1 \(AzureIdentity "m"\): apiVersion aadpodidentity\.k8s\.io\/v2 is not supported/],
    ['no kind', 'apiVersion: v1\nmetadata: {name: m}', 'document 1: kind is required'],
    ['no name', 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nspec: {type: 0}', 'document 1 (AzureIdentity): metadata.name is required'],
    ['no spec', 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: a}', 'document 1 (AzureIdentity "a"): spec is required'],
    ['a user-assigned identity without resourceID', identity('a', 'apps', { resourceID: undefined }), 'document 1 (AzureIdentity "a"): spec.resourceID is required'],
    ['a user-assigned identity without clientID', identity('a', 'apps', { clientID: undefined }), 'document 1 (AzureIdentity "a"): spec.clientID is required'],
    ['an unknown type', identity('a', 'apps', { type: 7 }), /^document 1 \(AzureIdentity "a"\): spec\.type 7 is not one of 0 \(user-assigned identity\)/],
    ['a resourceID that is not a user-assigned identity', docs(identity('a', 'apps', { resourceID: '/subscriptions/x/resourceGroups/rg' }), binding('b', 'a', 'a')), /^document 1 \(AzureIdentity "a"\): spec\.resourceID "\/subscriptions\/x\/resourceGroups\/rg" is not a user-assigned identity resource id/],
    ['a clientID that is not a GUID', docs(identity('app', 'apps', { clientID: 'nope' }), binding('b', 'app', 'app')), 'document 1 (AzureIdentity "app"): spec.clientID "nope" is not a GUID'],
    ['the same identity twice', docs(identity('a'), identity('a')), 'document 2 (AzureIdentity "a"): a second AzureIdentity apps/a'],
    ['an exception with no pod labels', 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzurePodIdentityException\nmetadata: {name: e}\nspec: {podLabels: {}}', /^document 1 \(AzurePodIdentityException "e"\): spec\.podLabels is required and must not be empty/],
    ['a bad List item', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [parse(identity('a')), { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'b' }, spec: { azureIdentity: 'a' } }] }), 'document 1, item 2 (AzureIdentityBinding "b"): spec.selector is required'],
  ];
  for (const [what, input, expected] of cases) {
    test(what, () => {
      const message = errorOf(input);
      if (typeof expected === 'string') assert.equal(message, expected);
      else assert.match(message, expected);
    });
  }
});

describe('the CLI', () => {
  function io(input: string, isTTY = false) {
    const out = { stdout: '', stderr: '' };
    const stdin = Object.assign(Readable.from([input]), { isTTY });
    return { out, io: { stdin, stdout: { write: (s: string) => (out.stdout += s) }, stderr: { write: (s: string) => (out.stderr += s) } } };
  }

  test('writes YAML to stdout and warnings to stderr, exit 0', async () => {
    const { out, io: streams } = io(docs(identity('orders'), binding('b', 'orders', 'orders'), identity('lonely')));
    assert.equal(await runMigrate(['--mode', 'Federated'], streams), 0);
    assert.equal(objectsOf(out.stdout)[0].spec.mode, 'Federated');
    assert.match(out.stderr, /^warning: document 3 \(AzureIdentity "lonely"\): skipped/m);
    assert.ok(!out.stdout.includes('warning'));
  });

  test('bad input: exit 1 with the error on stderr and nothing on stdout', async () => {
    const { out, io: streams } = io(docs(identity('a'), binding('x', 'a', undefined)));
    assert.equal(await runMigrate([], streams), 1);
    assert.equal(out.stderr, 'error: document 2 (AzureIdentityBinding "x"): spec.selector is required\n');
    assert.equal(out.stdout, '');
  });

  test('bad usage: exit 2', async () => {
    for (const argv of [['--mode', 'Sidecar'], ['--mode'], ['--frobnicate']]) {
      const { out, io: streams } = io('');
      assert.equal(await runMigrate(argv, streams), 2, argv.join(' '));
      assert.match(out.stderr, /^error: .*\n\nusage: pod-identity migrate/);
    }
    const tty = io('', true);
    assert.equal(await runMigrate([], tty.io), 2);
    const empty = io('   \n');
    assert.equal(await runMigrate([], empty.io), 1);
    assert.match(empty.out.stderr, /no input/);
  });

  test('runs as a program: node --import tsx operator/migrate/main.ts --mode=Node < old.yaml', async () => {
    const main = fileURLToPath(new URL('./main.ts', import.meta.url));
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', main, '--mode=Node'], { encoding: 'utf8' }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
      child.stdin?.end(docs(identity('orders'), binding('b', 'orders', 'orders')));
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(objectsOf(result.stdout)[0].spec.selector.matchLabels.aadpodidbinding, 'orders');
  });
});

/**
 * The shapes aad-pod-identity's own docs and examples used (deploy/demo, examples/ at v1.5.x and v1.6+): the same
 * objects, written once with the pre-1.6 capitalised field names and once with the later ones. MIC accepted both,
 * because Go decodes JSON field names case-insensitively.
 */
describe('migrate: aad-pod-identity objects from both eras', () => {
  const demoId = `/subscriptions/${SUB}/resourcegroups/demo/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-aad1`;
  // Before 1.6: one-space indentation, a quoted apiVersion, no namespace (default), capitalised spec fields.
  const before16 = [
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzureIdentity\nmetadata:\n name: demo-aad1\nspec:\n type: 0\n ResourceID: ' + demoId + '\n ClientID: ' + CLIENT,
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzureIdentityBinding\nmetadata:\n name: demo-azure-id-binding\nspec:\n AzureIdentity: "demo-aad1"\n Selector: "demo"',
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzurePodIdentityException\nmetadata:\n name: test-exception\nspec:\n PodLabels:\n  foo: bar\n  app: custom',
  ];
  // 1.6 and later: the same objects with camel-case fields (the exception example kept `PodLabels` throughout).
  const since16 = [
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzureIdentity\nmetadata:\n  name: demo-aad1\nspec:\n  type: 0\n  resourceID: ' + demoId + '\n  clientID: ' + CLIENT,
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzureIdentityBinding\nmetadata:\n  name: demo-azure-id-binding\nspec:\n  azureIdentity: "demo-aad1"\n  selector: "demo"',
    'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzurePodIdentityException\nmetadata:\n  name: test-exception\nspec:\n  podLabels:\n    foo: bar\n    app: custom',
  ];

  test('pre-1.6 capitalised fields (ResourceID, ClientID, AzureIdentity, Selector, PodLabels) migrate', () => {
    const { output, podIdentities } = migrate(docs(...before16));
    assert.equal(podIdentities.length, 1);
    const [pid] = podIdentities;
    assert.equal(pid?.metadata.namespace, 'default');
    assert.deepEqual(pid?.spec.identity, { existing: { resourceId: demoId } });
    assert.deepEqual(pid?.spec.selector, { matchLabels: { aadpodidbinding: 'demo' } });
    assert.equal(pid?.metadata.annotations?.[MIGRATED_CLIENT_ID_ANNOTATION], CLIENT);
    const cm = objectsOf(output).find((o) => o.kind === 'ConfigMap');
    assert.deepEqual(parse(cm.data[EXCEPTIONS_CONFIGMAP.key]).exceptions[0].podLabels, { foo: 'bar', app: 'custom' });
  });

  test('both eras give the same output, and so does a mix of them', () => {
    const old = migrate(docs(...before16)).output;
    assert.equal(migrate(docs(...since16)).output, old);
    assert.equal(migrate(docs(since16[0]!, before16[1]!, before16[2]!)).output, old);
  });

  test('the pre-1.6 service-principal example (type 1, TenantID, ClientID, ClientPassword) is skipped with a warning', () => {
    const sp = 'apiVersion: "aadpodidentity.k8s.io/v1"\nkind: AzureIdentity\nmetadata:\n  name: demo-aad1\nspec:\n  type: 1\n  TenantID: ' + CLIENT + '\n  ClientID: ' + CLIENT + '\n  ClientPassword: {"Name":"demo-aad1-sp","Namespace":"default"}';
    const { podIdentities, warnings } = migrate(docs(sp, before16[1]!));
    assert.equal(podIdentities.length, 0);
    assert.ok(warnings.some((w) => /service principal/.test(w)), warnings.join('\n'));
  });

  test('two spellings of one field with different values are refused, naming both', () => {
    const both = 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata:\n  name: b\nspec:\n  azureIdentity: demo-aad1\n  Selector: one\n  selector: two';
    assert.match(errorOf(both), /spec\.Selector and spec\.selector are the same field \(selector\) with different values/);
    const same = 'apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata:\n  name: demo-azure-id-binding\nspec:\n  azureIdentity: demo-aad1\n  Selector: demo\n  selector: demo';
    assert.deepEqual(migrate(docs(since16[0]!, same)).podIdentities[0]?.spec.selector, { matchLabels: { aadpodidbinding: 'demo' } });
  });

  test('a missing field is named by its current spelling', () => {
    assert.match(errorOf('apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata:\n  name: x\nspec:\n  type: 0\n  ClientID: ' + CLIENT), /spec\.resourceID is required/);
  });
});

test('the exceptions ConfigMap says the agent watches it through the API, not that it must be mounted', () => {
  const { output } = migrate(exception);
  assert.doesNotMatch(output, /mounted/);
  assert.match(output, /reads and watches this ConfigMap through the Kubernetes API/);
  assert.match(output, new RegExp(`--exceptions-configmap=${EXCEPTIONS_CONFIGMAP.namespace}/${EXCEPTIONS_CONFIGMAP.name}`));
});
