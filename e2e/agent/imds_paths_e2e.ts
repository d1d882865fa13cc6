/**
 * The identity boundary over every spelling of an IMDS request, from inside pod network namespaces, with
 * REAL iptables, the real local API server and the Azure emulator (whose IMDS decodes paths as leniently as a
 * real server may, so a disguised token path that reached it would get a node token).
 *
 * The matrix: path spellings (percent-escapes, case, `//`, `/./`, `..`, backslash, encoded `/`) × identity
 * hints (`client_id`, `object_id`, `msi_res_id`, `mi_res_id`, for the namespace's Node-mode identity and for
 * the node's kubelet identity) × pods (with a PodIdentity, without one, in another namespace with and without
 * its own). The invariant: a pod gets a token only for its own identity, and no pod's request reaches the
 * node IMDS token path except the agent's own Node-mode issuance. Needs root; skipped otherwise.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, GROUP, PODIDENTITY_PLURAL, TOKEN_EXCHANGE_AUDIENCE, VERSION } from '../../lib/api/types.js';
import { patchStatus } from '../../lib/k8s/objects.js';
import type { AzureEmulator, IdentityView } from '../../dev/azure-emulator/emulator.js';
import { claimsOf } from '../../dev/azure-emulator/test-fixture.js';
import { kubeconfigYaml } from '../../dev/local-cluster/controlplane/controlplane.js';
import { addPlatformImdsPath, createTopology, netnsAvailable, tcpForward, type Topology } from '../../dev/local-cluster/netns/netns.js';
import { startNodeAzure } from './azure-fixture.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const RESOURCE = 'https://management.azure.com/';
const QUERY = `?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`;
const AGENT_PORT = 8785;
const METRICS_PORT = 8786;
const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Every one of these decodes (as IMDS decodes it) to the token path. */
const TOKEN_SPELLINGS = [
  '/metadata/identity/oauth2/token',
  '/metadata/%69dentity/oauth2/token',
  '/metadata/IDENTIT%59/oauth2/token',
  '/metadata/identity%2Foauth2%2Ftoken',
  '/metadata/identity%2foauth2%2ftoken',
  '/%6Detadata/identity/oauth2/%74oken',
  '/METADATA/IDENTITY/OAUTH2/TOKEN',
  '/metadata//identity/oauth2/token',
  '//metadata/identity//oauth2/token/',
  '/metadata/./identity/oauth2/token',
  '/metadata/%2e/identity/oauth2/token',
  '/metadata/instance/../identity/oauth2/token',
  '/metadata/instance/%2e%2e/identity/oauth2/token',
  '/metadata/instance%2F..%2Fidentity/oauth2/token',
  '/metadata\\identity\\oauth2\\token',
  '/metadata%5Cidentity%5Coauth2%5Ctoken',
];

interface CurlResult {
  /** 0 when no HTTP answer came back. */
  status: number;
  body: Record<string, string>;
  text: string;
}

const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';

describe('the node’s identities through the metadata proxy: every spelling, every hint, every pod', { skip, timeout: 600_000 }, () => {
  let cluster: TestCluster;
  let topo: Topology;
  let emu: AzureEmulator;
  let apiProxy: { port: number; close(): Promise<void> };
  let dir: string;
  let agent: ManagedProcess | undefined;
  let ns: string;
  let otherNs: string;
  let fedIdentity: IdentityView;
  let nodeIdentity: IdentityView;
  let kubeletIdentity: IdentityView;
  let otherIdentity: IdentityView;
  /** `fed`, `node`: bound in `ns`; `unbound`: in `ns`, no PodIdentity; `foreign`: another namespace, labelled but unbound; `otherbound`: another namespace, its own PodIdentity. */
  const podNames = ['fed', 'node', 'unbound', 'foreign', 'otherbound'] as const;
  type PodName = (typeof podNames)[number];
  const podNs = (name: PodName) => topo.pods[podNames.indexOf(name)]!;
  /** The identity each pod may get; undefined: none at all. */
  const own = (name: PodName): IdentityView | undefined => (name === 'fed' ? fedIdentity : name === 'node' ? nodeIdentity : name === 'otherbound' ? otherIdentity : undefined);
  /** Whether a hint names the pod's own identity (or there is no hint): the only requests that may succeed. */
  const asksForOwn = (name: PodName, hint: string) => {
    const mine = own(name);
    return mine !== undefined && (hint === '' || [mine.clientId, mine.principalId, encodeURIComponent(mine.id)].some((v) => hint.endsWith(`=${v}`)));
  };
  let hints: [string, string][];

  before(async () => {
    cluster = await testCluster();
    const core = cluster.kc.makeApiClient(CoreV1Api);
    const custom = cluster.kc.makeApiClient(CustomObjectsApi);
    topo = await createTopology({ pods: podNames.length });
    dir = mkdtempSync(join(tmpdir(), 'podid-imds-paths-e2e-'));
    const nodeName = `node-${topo.id}`;

    const azure = await startNodeAzure(cluster, topo, nodeName);
    emu = azure.emu;
    const arm = azure.arm;
    fedIdentity = emu.seed.identity({ resourceGroup: 'rg', name: 'fed' });
    nodeIdentity = emu.seed.identity({ resourceGroup: 'rg', name: 'nodeid' });
    kubeletIdentity = emu.seed.identity({ resourceGroup: 'mc_rg', name: 'pool-agentpool' });
    otherIdentity = emu.seed.identity({ resourceGroup: 'rg', name: 'other' });
    hints = [
      ['no hint', ''],
      ['client_id of the Node-mode identity', `&client_id=${nodeIdentity.clientId}`],
      ['object_id of the Node-mode identity', `&object_id=${nodeIdentity.principalId}`],
      ['msi_res_id of the Node-mode identity', `&msi_res_id=${encodeURIComponent(nodeIdentity.id)}`],
      ['mi_res_id of the Node-mode identity', `&mi_res_id=${encodeURIComponent(nodeIdentity.id)}`],
      ['client_id of the kubelet identity', `&client_id=${kubeletIdentity.clientId}`],
      ['mi_res_id of the kubelet identity', `&mi_res_id=${encodeURIComponent(kubeletIdentity.id)}`],
      ['client_id of another pod’s Federated identity', `&client_id=${fedIdentity.clientId}`],
    ];

    ns = await cluster.namespace('imds-paths');
    otherNs = await cluster.namespace('imds-paths-other');
    for (const [identity, namespace] of [[fedIdentity, ns], [otherIdentity, otherNs]] as const) {
      await arm('PUT', `${identity.id}/federatedIdentityCredentials/fed-sa?api-version=2024-11-30`, {
        properties: { issuer: cluster.issuer, subject: `system:serviceaccount:${namespace}:fed-sa`, audiences: [TOKEN_EXCHANGE_AUDIENCE] },
      });
    }
    // The node pool: the namespace's Node-mode identity and the kubelet identity, as on AKS.
    await arm('PATCH', `/subscriptions/${emu.subscriptionId}/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool?api-version=2026-04-01`, {
      identity: { type: 'UserAssigned', userAssignedIdentities: { [nodeIdentity.id]: {}, [kubeletIdentity.id]: {} } },
    });
    for (const namespace of [ns, otherNs]) {
      for (const sa of ['default', 'fed-sa']) await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: sa } } });
    }
    const createPodIdentity = async (namespace: string, name: string, identity: IdentityView, mode: 'Federated' | 'Node') => {
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PODIDENTITY_PLURAL,
        body: { apiVersion: API_VERSION, kind: 'PodIdentity', metadata: { name }, spec: { identity: { existing: { resourceId: identity.id } }, mode } },
      });
      await patchStatus(custom, { group: GROUP, version: VERSION, plural: PODIDENTITY_PLURAL, namespace, name }, {
        mode,
        clientId: identity.clientId,
        principalId: identity.principalId,
        tenantId: identity.tenantId,
        resourceId: identity.id,
        conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: 'test', lastTransitionTime: new Date().toISOString() }],
      });
    };
    await createPodIdentity(ns, 'fed', fedIdentity, 'Federated');
    await createPodIdentity(ns, 'nodeid', nodeIdentity, 'Node');
    await createPodIdentity(otherNs, 'otherfed', otherIdentity, 'Federated');
    const createPod = async (namespace: string, name: PodName, labels: Record<string, string>, sa = 'default') => {
      const ip = podNs(name).ip;
      await core.createNamespacedPod({
        namespace,
        body: { metadata: { name, labels }, spec: { nodeName, serviceAccountName: sa, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } },
      });
      await core.patchNamespacedPodStatus({ namespace, name, body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } }, mergePatch());
    };
    await createPod(ns, 'fed', { 'podidentity.dev/identity': 'fed' }, 'fed-sa');
    await createPod(ns, 'node', { 'podidentity.dev/identity': 'nodeid' });
    await createPod(ns, 'unbound', { app: 'nothing' });
    // Carries the label of `ns`'s Node-mode PodIdentity; no PodIdentity of its own namespace selects it.
    await createPod(otherNs, 'foreign', { 'podidentity.dev/identity': 'nodeid' });
    await createPod(otherNs, 'otherbound', { 'podidentity.dev/identity': 'otherfed' }, 'fed-sa');

    const server = new URL(cluster.server);
    apiProxy = await tcpForward(topo.rootIp, server.hostname, Number(server.port));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      kubeconfigYaml({ server: `https://${topo.rootIp}:${apiProxy.port}`, caPem: cluster.caPem, token: cluster.token, tlsServerName: 'kubernetes' }),
      { mode: 0o600 },
    );
    const imdsPort = new URL(emu.imdsEndpoint).port;
    // Without the agent's rules, pod traffic to 169.254.169.254 would reach the (emulated) node IMDS as the node.
    await addPlatformImdsPath(topo, topo.rootIp, Number(imdsPort));
    const args = [
      '--import',
      'tsx',
      join(REPO, 'agent/main.ts'),
      'run',
      `--node-name=${nodeName}`,
      `--node-ip=${topo.nodeIp}`,
      `--listen-port=${AGENT_PORT}`,
      `--metrics-address=${topo.nodeIp}`,
      `--metrics-port=${METRICS_PORT}`,
      `--kubeconfig=${kubeconfig}`,
      `--authority-host=https://${topo.rootIp}:${new URL(emu.armEndpoint).port}`,
      `--upstream-imds=http://${topo.rootIp}:${imdsPort}`,
      '--iptables-mode=nft',
      // The metadata proxy is on by default; said here because it is what the attack went through.
      '--metadata-proxy=true',
    ];
    agent = topo.spawn('agent', topo.nodeNs, process.execPath, args, { env: childEnv(), cwd: REPO, logFile: process.env['PODID_AGENT_E2E_LOG'] ?? join(dir, 'agent.log') });
    const proc = agent;
    await waitFor(
      'agent /readyz',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`agent exited:\n${proc.output().slice(-3000)}`);
        const res = await fetch(`http://${topo.nodeIp}:${METRICS_PORT}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${proc.output().slice(-3000)}`);
    });
  });

  after(async () => {
    await agent?.stop();
    if (topo) await topo.exec(topo.nodeNs, process.execPath, ['--import', 'tsx', join(REPO, 'agent/main.ts'), 'uninstall', '--iptables-mode=nft'], { env: childEnv() });
    await apiProxy?.close();
    await emu?.stop();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function childEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: emu.caCertPath };
    for (const key of Object.keys(env)) if (/^(AZURE_|IDENTITY_|MSI_)/.test(key)) delete env[key];
    return env;
  }

  /** curl from inside a pod netns, the path sent exactly as written (`--path-as-is`: no client-side normalising). */
  async function curl(pod: PodName, path: string, { method = 'GET', headers = { Metadata: 'true' } as Record<string, string> } = {}): Promise<CurlResult> {
    const args = ['-s', '--path-as-is', '-m', '10', '-X', method, '-w', '\n%{http_code}'];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    args.push(`http://169.254.169.254${path}`);
    const res = await topo.exec(podNs(pod).ns, 'curl', args);
    const lines = res.stdout.split('\n');
    const status = Number(lines.pop() ?? '0');
    const text = lines.join('\n');
    let body: Record<string, string> = {};
    try {
      body = JSON.parse(text) as Record<string, string>;
    } catch {
      /* not JSON */
    }
    return { status, body, text };
  }

  /** The invariant for one answer: a token only for the pod's own identity, with the resource echoed as its audience. */
  function assertOnlyOwnToken(pod: PodName, what: string, res: CurlResult): void {
    const mine = own(pod);
    if (!res.body['access_token']) {
      assert.notEqual(res.status, 200, `${pod} ${what}: a 200 without a token: ${res.text}`);
      assert.doesNotMatch(res.text, /access_token|eyJ/, `${pod} ${what}`);
      return;
    }
    assert.ok(mine, `${pod} has no PodIdentity but got a token by ${what}`);
    const claims = claimsOf(res.body['access_token']);
    assert.equal(claims['oid'], mine.principalId, `${pod} ${what}: a token for someone else (${String(claims['oid'])})`);
    assert.equal(res.body['resource'], claims['aud'], `${pod} ${what}: the echoed resource is the audience`);
  }

  const imdsTokenRequests = () => emu.requests.log().filter((e) => e.route === 'imds.token');

  test('attack: a pod without a PodIdentity, or in another namespace, gets no token by any spelling or hint, and nothing reaches the node IMDS', async () => {
    const before = imdsTokenRequests().length;
    // One client per pod at a time, the pods side by side.
    await Promise.all(
      (['unbound', 'foreign', 'otherbound', 'fed'] as const).map(async (pod) => {
        for (const spelling of TOKEN_SPELLINGS) {
          for (const [hintName, hint] of hints) {
            const res = await curl(pod, spelling + QUERY + hint);
            assert.notEqual(res.status, 0, `${pod} ${spelling} ${hintName}: no answer`);
            assertOnlyOwnToken(pod, `${spelling} with ${hintName}`, res);
            assert.equal(res.status === 200, asksForOwn(pod, hint), `${pod} ${spelling} with ${hintName}: ${res.status} ${res.text}`);
          }
        }
      }),
    );
    assert.deepEqual(imdsTokenRequests().slice(before), [], 'no request reached the node IMDS token path');
  });

  test('a pod with a Node-mode identity gets only that identity by any spelling; the node IMDS sees only the agent’s canonical request', async () => {
    const before = imdsTokenRequests().length;
    for (const spelling of TOKEN_SPELLINGS) {
      for (const [hintName, hint] of hints) {
        const res = await curl('node', spelling + QUERY + hint);
        assertOnlyOwnToken('node', `${spelling} with ${hintName}`, res);
        assert.equal(res.status, asksForOwn('node', hint) ? 200 : 400, `node ${spelling} with ${hintName}: ${res.text}`);
      }
    }
    const seen = imdsTokenRequests().slice(before);
    assert.ok(seen.length <= 1, `one issuance, then the cache: ${seen.length} node IMDS requests`);
    for (const entry of seen) assert.equal(entry.path, '/metadata/identity/oauth2/token');
  });

  test('the metadata proxy forwards only its allow-list, in canonical form; never user data, the attested document or disguised separators', async () => {
    const instance = await curl('unbound', '/metadata//instance/./compute/../?api-version=2021-02-01');
    assert.equal(instance.status, 200, instance.text);
    const doc = instance.body as unknown as { compute: Record<string, unknown> };
    assert.equal(doc.compute['vmScaleSetName'], 'pool');
    assert.equal(doc.compute['userData'], undefined, 'user data is taken out of the document');
    const leaf = await curl('unbound', '/metadata/instance/compute/%76mScaleSetName?api-version=2021-02-01&format=text');
    assert.deepEqual([leaf.status, leaf.text], [200, 'pool']);
    for (const path of ['/metadata/instance/compute/userData', '/metadata/instance/compute/userData.', '/metadata/attested/document', '/metadata/identity/info', '/metadata/%69dentity/info']) {
      const res = await curl('unbound', `${path}?api-version=2021-02-01&format=text`);
      assert.ok(res.status === 403 || res.status === 404, `${path}: ${res.status} ${res.text}`);
      assert.doesNotMatch(res.text, /user data of/);
    }
    // attack: a segment the node IMDS may trim (`compute.` is `compute`) names a document the agent would not redact.
    const trimmed = await curl('unbound', '/metadata/instance/compute.?api-version=2021-02-01');
    assert.equal(trimmed.status, 403, trimmed.text);
    assert.doesNotMatch(trimmed.text, /userData/);
    for (const path of ['/metadata/instance%2Fcompute', '/metadata/instance\\compute', '/metadata/instance%5Ccompute']) {
      const res = await curl('unbound', `${path}?api-version=2021-02-01`);
      assert.equal(res.status, 400, `${path}: ${res.text}`);
      assert.equal(res.body['error'], 'invalid_request');
    }
  });

  test('strictness: repeated parameters are 400, other methods 405, a scope is answered for its resource', async () => {
    const before = imdsTokenRequests().length;
    for (const pod of ['fed', 'node', 'unbound'] as const) {
      for (const param of ['resource', 'api-version', 'client_id', 'object_id', 'msi_res_id', 'mi_res_id']) {
        const value = param === 'resource' ? encodeURIComponent(RESOURCE) : param === 'api-version' ? '2018-02-01' : encodeURIComponent(own(pod)?.clientId ?? nodeIdentity.clientId);
        const res = await curl(pod, `${TOKEN_SPELLINGS[0]}${QUERY}&${param}=${value}${param === 'resource' || param === 'api-version' ? '' : `&${param}=${value}`}`);
        assert.deepEqual([res.status, res.body], [400, { error: 'invalid_request', error_description: `Query parameter '${param}' is specified more than once` }], `${pod} ${param}`);
      }
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'CONNECT']) {
        const res = await curl(pod, TOKEN_SPELLINGS[1] + QUERY, { method });
        assert.equal(res.status, 405, `${pod} ${method}`);
        assert.equal(res.body['error'], 'invalid_request');
      }
    }
    for (const pod of ['fed', 'node'] as const) {
      const res = await curl(pod, `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://vault.azure.net/.default')}`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body['resource'], 'https://vault.azure.net');
      assertOnlyOwnToken(pod, 'a scope as resource', res);
    }
    const seen = imdsTokenRequests().slice(before);
    assert.equal(seen.length, 1, 'only the Node-mode pod’s vault token was asked of the node IMDS');
  });
});
