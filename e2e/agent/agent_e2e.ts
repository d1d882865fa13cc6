/**
 * The node agent with REAL iptables in network namespaces, on the real local API server and the Azure
 * emulator. Pods (netns on a bridge in a "node" netns) call 169.254.169.254 like any app would.
 * Needs root (ip netns, iptables); skipped otherwise.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CoreV1Api } from '@kubernetes/client-node';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import { ourRules, parseSave } from '../../agent/interception/rules.js';
import type { AzureEmulator, IdentityView } from '../../dev/azure-emulator/emulator.js';
import { claimsOf } from '../../dev/azure-emulator/test-fixture.js';
import { netnsAvailable, type Topology } from '../../dev/local-cluster/netns/netns.js';
import { waitFor } from '../../dev/support/wait.js';
import { mergePatch, REPO, startAgentNode, type AgentNode, type CurlResult } from './node-fixture.js';

const RESOURCE = 'https://management.azure.com/';
const TOKEN_PATH = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`;
const AGENT_PORT = 8775;
const METRICS_PORT = 8776;
const EXCEPTIONS_CONFIGMAP = 'podidentity-imds-exceptions';

const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';

describe('node agent in network namespaces', { skip, timeout: 600_000 }, () => {
  let node: AgentNode;
  let topo: Topology;
  let emu: AzureEmulator;
  let core: CoreV1Api;
  let ns: string;
  let otherNs: string;
  let fedIdentity: IdentityView;
  let nodeIdentity: IdentityView;
  const podNames = ['fed', 'node', 'unbound', 'foreign', 'dup'] as const;
  type PodName = (typeof podNames)[number];
  const podNs = (name: PodName) => topo.pods[podNames.indexOf(name)]!;

  before(async () => {
    node = await startAgentNode({ pods: podNames.length, name: 'agent', agentPort: AGENT_PORT, metricsPort: METRICS_PORT });
    ({ topo, emu, core } = node);
    const { cluster, arm } = node;
    fedIdentity = emu.seed.identity({ resourceGroup: 'rg', name: 'fed' });
    nodeIdentity = emu.seed.identity({ resourceGroup: 'rg', name: 'nodeid' });

    // Kubernetes: namespaces, service accounts, PodIdentities (status written here: no operator runs).
    ns = await cluster.namespace('agent');
    otherNs = await cluster.namespace('agent-other');
    await arm('PUT', `${fedIdentity.id}/federatedIdentityCredentials/fed-sa?api-version=2024-11-30`, {
      properties: { issuer: cluster.issuer, subject: `system:serviceaccount:${ns}:fed-sa`, audiences: [TOKEN_EXCHANGE_AUDIENCE] },
    });
    await arm('PATCH', `/subscriptions/${emu.subscriptionId}/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool?api-version=2026-04-01`, {
      identity: { type: 'UserAssigned', userAssignedIdentities: { [nodeIdentity.id]: {} } },
    });
    for (const [namespace, sa] of [[ns, 'default'], [ns, 'fed-sa'], [otherNs, 'default'], [otherNs, 'fed-sa']] as const) {
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: sa } } });
    }
    await node.createPodIdentity(ns, 'fed', fedIdentity, 'Federated');
    await node.createPodIdentity(ns, 'nodeid', nodeIdentity, 'Node');

    await node.createPod(ns, 'fed', podNs('fed').ip, { 'podidentity.dev/identity': 'fed' }, 'fed-sa');
    await node.createPod(ns, 'node', podNs('node').ip, { 'podidentity.dev/identity': 'nodeid' });
    await node.createPod(ns, 'unbound', podNs('unbound').ip, { app: 'nothing' });
    await node.createPod(otherNs, 'foreign', podNs('foreign').ip, { 'podidentity.dev/identity': 'fed' }, 'fed-sa');
    // Two live pods claim one IP (a reuse race): neither may get a token.
    await node.createPod(ns, 'dup-a', podNs('dup').ip, { 'podidentity.dev/identity': 'fed' }, 'fed-sa');
    await node.createPod(ns, 'dup-b', podNs('dup').ip, { 'podidentity.dev/identity': 'fed' }, 'fed-sa', 'Pending');

    await node.startAgent([
      '--drift-check-interval=500',
      '--not-ready-wait=1000',
      // The feature on, with no ConfigMap yet: no exceptions until the test writes one.
      `--exceptions-configmap=${ns}/${EXCEPTIONS_CONFIGMAP}`,
    ]);
  });

  after(async () => {
    await node?.stop();
  });

  const childEnv = () => node.childEnv();
  const curl = (pod: PodName, path = TOKEN_PATH, headers: Record<string, string> = { Metadata: 'true' }) => node.curl(podNs(pod), path, { headers });

  async function metric(name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`http://${topo.nodeIp}:${METRICS_PORT}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  async function ourSavedRules(): Promise<string[]> {
    const res = await topo.exec(topo.nodeNs, 'iptables-nft-save', []);
    return ourRules(parseSave(res.stdout));
  }

  test('Federated: a plain GET from a pod returns a token for that pod’s identity', async () => {
    const res = await curl('fed');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const claims = claimsOf(res.body['access_token']!);
    assert.equal(claims['oid'], fedIdentity.principalId);
    assert.equal(claims['appid'], fedIdentity.clientId);
    assert.equal(res.body['client_id'], fedIdentity.clientId);
    assert.equal(res.body['resource'], RESOURCE);
    for (const v of Object.values(res.body)) assert.equal(typeof v, 'string');
  });

  test('Node mode: the node IMDS issues the pod’s identity', async () => {
    const before = emu.requests.count('imds.token');
    const res = await curl('node');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const claims = claimsOf(res.body['access_token']!);
    assert.equal(claims['oid'], nodeIdentity.principalId);
    assert.equal(claims['appid'], nodeIdentity.clientId);
    assert.equal(emu.requests.count('imds.token'), before + 1, 'the agent asked the node IMDS once');
  });

  for (const credential of ['managed', 'default'] as const) {
    test(`@azure/identity ${credential === 'managed' ? 'ManagedIdentityCredential' : 'DefaultAzureCredential'} inside a pod netns works unchanged`, async () => {
      const child = topo.spawn('sdk-client', podNs('fed').ns, process.execPath, ['--import', 'tsx', join(REPO, 'e2e/agent/testdata/sdk-client.ts')], {
        env: { ...childEnv(), CREDENTIAL: credential },
        cwd: REPO,
      });
      await child.exited;
      const line = child.output().trim().split('\n').reverse().find((l) => l.startsWith('{"ok"'));
      assert.ok(line, child.output());
      const result = JSON.parse(line) as { ok: boolean; token?: string; message?: string };
      assert.equal(result.ok, true, result.message);
      assert.equal(claimsOf(result.token!)['oid'], fedIdentity.principalId);
    });
  }

  test('refusals: unbound pod, other namespace, spoofed X-Forwarded-For, missing Metadata header', async () => {
    const unbound = await curl('unbound');
    assert.equal(unbound.status, 400);
    assert.equal(unbound.body['error'], 'invalid_request');
    assert.match(unbound.body['error_description']!, /^Identity not found: no PodIdentity in namespace/);

    const foreign = await curl('foreign');
    assert.equal(foreign.status, 400);
    assert.match(foreign.body['error_description']!, /^Identity not found: no PodIdentity in namespace agent-other-/);

    const spoofed = await curl('unbound', TOKEN_PATH, { Metadata: 'true', 'X-Forwarded-For': podNs('fed').ip });
    assert.equal(spoofed.status, 400);
    assert.equal(spoofed.body['access_token'], undefined);
    assert.match(spoofed.body['error_description']!, /X-Forwarded-For/);

    const { status, body } = await curl('fed', TOKEN_PATH, {});
    assert.deepEqual({ status, body }, { status: 400, body: { error: 'invalid_request', error_description: 'Required metadata header not specified' } });
  });

  test('IMDS exception: an unselected pod matching an entry gets the node’s token from the node IMDS; malformed or removed → refused', async () => {
    const exceptionsYaml = (labelValue: string) => `exceptions:\n  - namespace: ${ns}\n    podLabels: { app: ${labelValue} }\n    migratedFrom: AzurePodIdentityException ${ns}/addons\n`;
    const write = (text: string) => core.replaceNamespacedConfigMap({ namespace: ns, name: EXCEPTIONS_CONFIGMAP, body: { metadata: { name: EXCEPTIONS_CONFIGMAP }, data: { 'exceptions.yaml': text } } });
    // Without the entry (the agent watches, but the ConfigMap does not exist yet) the pod is refused.
    assert.equal((await curl('unbound')).status, 400);
    const before = emu.requests.count('imds.token');
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: EXCEPTIONS_CONFIGMAP }, data: { 'exceptions.yaml': exceptionsYaml('nothing') } } });
    try {
      const passed = await waitFor('exception honoured', async () => {
        const r = await curl('unbound');
        return r.status === 200 && r;
      }, { timeoutMs: 10_000 });
      assert.equal(claimsOf(passed.body['access_token']!)['oid'], nodeIdentity.principalId, 'the node’s identity, from the node IMDS');
      assert.equal(emu.requests.count('imds.token'), before + 1);
      assert.equal((await curl('unbound')).status, 200);
      assert.equal(emu.requests.count('imds.token'), before + 2, 'never cached: every request goes to the node IMDS');
      assert.equal(await metric('podidentity_agent_token_requests_total', '{result="exception"}'), 2);
      // A pod in another namespace with a PodIdentity label is unaffected.
      assert.equal((await curl('foreign')).status, 400);

      // Malformed (a label value that is a YAML number): no exceptions at all.
      await write(exceptionsYaml('1'));
      await waitFor('malformed exceptions refused', async () => (await curl('unbound')).status === 400, { timeoutMs: 10_000 });
      assert.ok((await metric('podidentity_agent_imds_exceptions_errors_total')) >= 1);
      assert.equal(await metric('podidentity_agent_imds_exceptions'), 0);
      await write(exceptionsYaml('nothing'));
      await waitFor('fixed exceptions honoured', async () => (await curl('unbound')).status === 200, { timeoutMs: 10_000 });
    } finally {
      await core.deleteNamespacedConfigMap({ namespace: ns, name: EXCEPTIONS_CONFIGMAP });
    }
    await waitFor('deleted exceptions refused', async () => (await curl('unbound')).status === 400, { timeoutMs: 10_000 });
  });

  test('an IP claimed by two live pods is refused', async () => {
    const res = await curl('dup');
    assert.equal(res.status, 503);
    assert.match(res.body['error_description']!, /claimed by more than one live pod/);
  });

  test('drift: a deleted jump is put back and counted as a repair', async () => {
    const before = await ourSavedRules();
    const repairs = await metric('podidentity_agent_iptables_repairs_total');
    const del = await topo.exec(topo.nodeNs, 'iptables-nft', ['-w', '5', '-t', 'nat', '-D', 'PREROUTING', '-j', 'PODID-IMDS']);
    assert.equal(del.code, 0, del.stderr);
    await waitFor('rules repaired', async () => (await ourSavedRules()).join('\n') === before.join('\n'), { timeoutMs: 10_000 });
    assert.ok((await metric('podidentity_agent_iptables_repairs_total')) > repairs);
  });

  test('restarts (SIGTERM, SIGKILL) under a request loop: nothing reaches the node IMDS, rules identical', async () => {
    const rulesBefore = await ourSavedRules();
    assert.ok(rulesBefore.some((r) => r.includes('DNAT')), rulesBefore.join('\n'));
    const imdsBefore = emu.requests.count('imds.token');
    const results: CurlResult[] = [];
    let looping = true;
    const loop = (async () => {
      while (looping) results.push(await curl('fed'));
    })();
    try {
      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        const seen = results.length;
        await waitFor('a request before the restart', () => results.length > seen + 2, { timeoutMs: 20_000 });
        node.agent!.kill(signal);
        await node.agent!.exited;
        const down = results.length;
        // While the agent is down: refused, never answered by someone else.
        await waitFor('a request while the agent is down', () => results.length > down + 2, { timeoutMs: 20_000 });
        await node.restartAgent();
        const up = results.length;
        await waitFor('a token after the restart', () => results.slice(up).some((r) => r.status === 200), { timeoutMs: 20_000 });
      }
    } finally {
      looping = false;
      await loop;
    }
    assert.equal(emu.requests.count('imds.token'), imdsBefore, 'no request reached the node IMDS');
    const refused = results.filter((r) => r.status === 0).length;
    assert.ok(refused >= 4, `connections were refused while the agent was down (${refused} of ${results.length})`);
    for (const r of results) {
      assert.ok(r.status === 0 || r.status === 200, `unexpected answer ${r.status} ${JSON.stringify(r.body)}`);
      if (r.status === 200) assert.equal(claimsOf(r.body['access_token']!)['oid'], fedIdentity.principalId);
    }
    assert.deepEqual(await ourSavedRules(), rulesBefore);
  });

  test('unbinding the pod stops issuance even with a cached token; rebinding serves the same cached token', async () => {
    const first = await curl('fed');
    assert.equal(first.status, 200);
    assert.ok((await metric('podidentity_agent_cache_entries')) >= 1);
    await core.patchNamespacedPod({ namespace: ns, name: 'fed', body: { metadata: { labels: { 'podidentity.dev/identity': null } } } }, mergePatch());
    await waitFor('unbound pod refused', async () => (await curl('fed')).status === 400, { timeoutMs: 10_000 });
    assert.ok((await metric('podidentity_agent_cache_entries')) >= 1, 'the token is still cached');
    await core.patchNamespacedPod({ namespace: ns, name: 'fed', body: { metadata: { labels: { 'podidentity.dev/identity': 'fed' } } } }, mergePatch());
    const again = await waitFor('rebound pod served', async () => {
      const r = await curl('fed');
      return r.status === 200 && r;
    });
    assert.equal(again.body['access_token'], first.body['access_token'], 'served from the cache once authorised again');
  });

  test('deleting the pod stops issuance', async () => {
    assert.equal((await curl('fed')).status, 200);
    await core.deleteNamespacedPod({ namespace: ns, name: 'fed', gracePeriodSeconds: 0 });
    await waitFor('deleted pod refused', async () => (await curl('fed')).status === 400, { timeoutMs: 10_000 });
    const res = await curl('fed');
    assert.match(res.body['error_description']!, /no pod on node/);
  });

  test('metrics and health', async () => {
    assert.ok((await metric('podidentity_agent_token_requests_total', '{result="issued"}')) > 0);
    assert.ok((await metric('podidentity_agent_token_requests_total', '{result="denied"}')) > 0);
    assert.ok((await metric('podidentity_agent_iptables_syncs_total')) > 0);
    assert.equal((await fetch(`http://${topo.nodeIp}:${METRICS_PORT}/healthz`)).status, 200);
  });

  test('control: only `agent uninstall` removes the rules, and then pods do reach the node IMDS', async () => {
    await node.agent!.stop();
    assert.ok((await ourSavedRules()).length > 0, 'stopping the agent leaves the rules');
    assert.equal((await curl('unbound')).status, 0, 'refused while the agent is stopped');
    const res = await node.uninstall();
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await ourSavedRules(), []);
    const before = emu.requests.count('imds.token');
    const leaked = await curl('unbound');
    // This is what the rules prevent: any pod would get the node's identities.
    assert.equal(leaked.status, 200, JSON.stringify(leaked.body));
    assert.equal(claimsOf(leaked.body['access_token']!)['oid'], nodeIdentity.principalId);
    assert.equal(emu.requests.count('imds.token'), before + 1);
  });
});
