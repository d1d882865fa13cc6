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
import { after, before, describe, test } from 'node:test';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import type { AzureEmulator, IdentityView } from '../../dev/azure-emulator/emulator.js';
import { claimsOf } from '../../dev/azure-emulator/test-fixture.js';
import { netnsAvailable, type Topology } from '../../dev/local-cluster/netns/netns.js';
import { startAgentNode, type AgentNode, type CurlResult } from './node-fixture.js';

const RESOURCE = 'https://management.azure.com/';
const QUERY = `?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`;
const AGENT_PORT = 8785;
const METRICS_PORT = 8786;

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

const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';

describe('the node’s identities through the metadata proxy: every spelling, every hint, every pod', { skip, timeout: 600_000 }, () => {
  let node: AgentNode;
  let topo: Topology;
  let emu: AzureEmulator;
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
    node = await startAgentNode({ pods: podNames.length, name: 'imds-paths', agentPort: AGENT_PORT, metricsPort: METRICS_PORT });
    ({ topo, emu } = node);
    const { cluster, core, arm } = node;
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
    await node.createPodIdentity(ns, 'fed', fedIdentity, 'Federated');
    await node.createPodIdentity(ns, 'nodeid', nodeIdentity, 'Node');
    await node.createPodIdentity(otherNs, 'otherfed', otherIdentity, 'Federated');
    const createPod = (namespace: string, name: PodName, labels: Record<string, string>, sa = 'default') => node.createPod(namespace, name, podNs(name).ip, labels, sa);
    await createPod(ns, 'fed', { 'podidentity.dev/identity': 'fed' }, 'fed-sa');
    await createPod(ns, 'node', { 'podidentity.dev/identity': 'nodeid' });
    await createPod(ns, 'unbound', { app: 'nothing' });
    // Carries the label of `ns`'s Node-mode PodIdentity; no PodIdentity of its own namespace selects it.
    await createPod(otherNs, 'foreign', { 'podidentity.dev/identity': 'nodeid' });
    await createPod(otherNs, 'otherbound', { 'podidentity.dev/identity': 'otherfed' }, 'fed-sa');

    // The metadata proxy is on by default; said here because it is what the attack went through.
    await node.startAgent(['--metadata-proxy=true']);
  });

  after(async () => {
    await node?.stop();
  });

  /** curl from inside a pod netns, the path sent exactly as written (`--path-as-is`: no client-side normalising). */
  const curl = (pod: PodName, path: string, options?: { method?: string; headers?: Record<string, string> }) => node.curl(podNs(pod), path, options);

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
