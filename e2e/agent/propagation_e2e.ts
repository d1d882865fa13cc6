/**
 * The first token after a new federated credential (issue 14): the real operator creates a fresh identity and
 * its credential in the emulator, whose Azure AD refuses the credential (AADSTS70021) until it has propagated;
 * the real agent with real iptables answers the pod 503 + Retry-After meanwhile; an unmodified
 * @azure/identity ManagedIdentityCredential in the pod's netns gets its token through its own retry policy;
 * the PodIdentity says Propagating, then records the first successful exchange. Needs root; skipped otherwise.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { CONDITION_CREDENTIAL_PROPAGATED, CONDITION_READY } from '../../lib/api/types.js';
import { claimsOf } from '../../dev/azure-emulator/test-fixture.js';
import { createTopology, netnsAvailable, type Topology } from '../../dev/local-cluster/netns/netns.js';
import { condition, createPod, createPodIdentity, getPodIdentity, operatorEnv, type OperatorEnv } from '../operator/harness.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';
import { trustClusterIssuer } from './azure-fixture.js';
import { appEnv, nodeAgentRunner, REPO, type NodeAgentRunner } from './node-fixture.js';

/** Short enough for the SDK's own retries (three, each after the agent's Retry-After) to cover it. */
const PROPAGATION_DELAY_MS = 4_000;
const AGENT_PORT = 8785;
const METRICS_PORT = 8786;

const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';

describe('first token after a new federated credential', { skip, timeout: 600_000 }, () => {
  let topo: Topology;
  let env: OperatorEnv;
  let operator: ManagedProcess | undefined;
  let runner: NodeAgentRunner | undefined;
  let dir: string;
  let nodeName: string;

  before(async () => {
    topo = await createTopology({ pods: 2 });
    nodeName = `node-${topo.id}`;
    dir = mkdtempSync(join(tmpdir(), 'podid-propagation-e2e-'));
    env = await operatorEnv({ extraHosts: [topo.rootIp], ficPropagationDelayMs: PROPAGATION_DELAY_MS });
    env.emu.trustInProcess();
    await trustClusterIssuer(env.emu, env.cluster);
    operator = env.startOperator();

    runner = await nodeAgentRunner({ topo, cluster: env.cluster, emu: env.emu, nodeName, agentPort: AGENT_PORT, metricsPort: METRICS_PORT, dir });
    await runner.launch(runner.runArgs);
  });

  after(async () => {
    await runner?.close();
    await operator?.stop();
    await env?.emu.stop();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // An unmodified app: nothing steers it to another managed-identity source.
  const childEnv = () => appEnv(env.emu);

  /** The agent's answers so far, by HTTP status (its token-request histogram). */
  async function answersByStatus(): Promise<Record<string, number>> {
    const text = await (await fetch(`http://${topo.nodeIp}:${METRICS_PORT}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/^podidentity_agent_token_request_duration_seconds_count\{([^}]*)\} (\d+)/gm)) {
      const code = /code="(\d+)"/.exec(m[1] ?? '')?.[1] ?? '?';
      counts[code] = (counts[code] ?? 0) + Number(m[2]);
    }
    return counts;
  }

  test('a fresh PodIdentity: Propagating, the real SDK gets its first token by its own retries (503 + Retry-After, never 500), then status records the first exchange', async () => {
    const pod = topo.pods[0]!;
    await createPod(env, 'app', { 'podidentity.dev/identity': 'web' }, { serviceAccountName: 'app', nodeName });
    await env.core.patchNamespacedPodStatus({ namespace: env.namespace, name: 'app', body: { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await createPodIdentity(env, 'web', { identity: { managed: {} }, mode: 'Federated' });

    const ready = await waitFor('PodIdentity web Ready', async () => {
      const pid = await getPodIdentity(env, 'web');
      return condition(pid, CONDITION_READY)?.status === 'True' && pid;
    }, { timeoutMs: 60_000 });
    // Ready means the Azure resources are in place; propagation is reported beside it.
    const propagating = condition(ready, CONDITION_CREDENTIAL_PROPAGATED);
    assert.equal(propagating?.status, 'False', JSON.stringify(ready.status));
    assert.equal(propagating?.reason, 'Propagating');
    assert.match(propagating?.message ?? '', /503 and Retry-After/);
    const credential = ready.status?.federatedCredentials?.[0];
    assert.equal(credential?.subject, `system:serviceaccount:${env.namespace}:app`);
    assert.ok(credential?.lastWriteTime, 'the credential write time is recorded');
    assert.equal(ready.status?.firstSuccessfulExchange, undefined);
    // The client starts while Azure AD still refuses the credential, or the test proves nothing.
    const acceptedFrom = env.emu.state.federatedCredentials(ready.status!.resourceId!)[0]?.acceptedFrom ?? 0;
    assert.ok(acceptedFrom > Date.now() + 500, `the credential was already accepted ${Date.now() - acceptedFrom} ms ago`);

    const before = await answersByStatus();
    const client = topo.spawn('sdk-client', pod.ns, process.execPath, ['--import', 'tsx', join(REPO, 'e2e/agent/testdata/sdk-client.ts')], { env: { ...childEnv(), CREDENTIAL: 'managed' }, cwd: REPO });
    await client.exited;
    const line = client.output().trim().split('\n').reverse().find((l) => l.startsWith('{"ok"'));
    assert.ok(line, client.output());
    const result = JSON.parse(line) as { ok: boolean; token?: string; message?: string };
    assert.equal(result.ok, true, result.message);
    assert.equal(claimsOf(result.token!)['oid'], ready.status?.principalId);
    assert.ok(Date.now() >= acceptedFrom, 'the token came only once Azure AD accepted the credential');

    const after = await answersByStatus();
    const delta = (code: string) => (after[code] ?? 0) - (before[code] ?? 0);
    assert.ok(delta('503') >= 1, `the agent answered 503 + Retry-After while the credential propagated: ${JSON.stringify(after)}`);
    assert.equal(delta('500'), 0, 'never a 500');
    assert.equal(delta('200'), 1);

    const recorded = await waitFor('the first exchange in status', async () => {
      const pid = await getPodIdentity(env, 'web');
      return condition(pid, CONDITION_CREDENTIAL_PROPAGATED)?.status === 'True' && pid;
    }, { timeoutMs: 30_000 });
    assert.equal(condition(recorded, CONDITION_CREDENTIAL_PROPAGATED)?.reason, 'Propagated');
    assert.equal(recorded.status?.firstSuccessfulExchange?.node, nodeName);
    assert.ok(Date.parse(recorded.status!.firstSuccessfulExchange!.time) >= Date.parse(credential.lastWriteTime) - 1000);
    assert.equal(condition(recorded, CONDITION_READY)?.status, 'True');
    // What `kubectl describe` shows: the agent's Event on the PodIdentity.
    const events = await env.core.listNamespacedEvent({ namespace: env.namespace, fieldSelector: 'reason=FirstTokenExchange,involvedObject.kind=PodIdentity' });
    assert.equal(events.items.length, 1);
    assert.equal(events.items[0]?.involvedObject.name, 'web');
    assert.match(events.items[0]?.message ?? '', new RegExp(`node ${nodeName}`));
  });

  test('Azure AD throttling is 429 with its own Retry-After, an Azure AD failure is 503 with Retry-After: never a 500', async () => {
    const pod = topo.pods[1]!;
    await createPod(env, 'busy', { 'podidentity.dev/identity': 'busy' }, { serviceAccountName: 'busy', nodeName });
    await env.core.patchNamespacedPodStatus({ namespace: env.namespace, name: 'busy', body: { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await createPodIdentity(env, 'busy', { identity: { managed: {} }, mode: 'Federated' });
    await waitFor('PodIdentity busy Ready', async () => condition(await getPodIdentity(env, 'busy'), CONDITION_READY)?.status === 'True', { timeoutMs: 60_000 });
    const ask = async () => {
      const res = await topo.exec(pod.ns, 'curl', ['-s', '-i', '-m', '10', '-H', 'Metadata: true', 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/']);
      const [head = '', body = ''] = res.stdout.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
      const retryAfter = /^retry-after: *(\S+)/im.exec(head)?.[1];
      return { status, retryAfter, body: JSON.parse(body || '{}') as Record<string, string> };
    };
    env.emu.faults.set({ match: { route: 'aad.token' }, status: 429, retryAfterSeconds: 7, times: 1 });
    const throttled = await ask();
    assert.equal(throttled.status, 429, JSON.stringify(throttled.body));
    assert.equal(throttled.retryAfter, '7', 'Azure AD’s own Retry-After, passed on');
    assert.equal(throttled.body['error'], 'aad_throttled');
    env.emu.faults.set({ match: { route: 'aad.token' }, status: 500, times: 1 });
    const down = await ask();
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(down.retryAfter, '5');
    assert.equal(down.body['error'], 'aad_unavailable');
    assert.equal(down.body['access_token'], undefined);
  });
});
