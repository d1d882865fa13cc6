/**
 * The agent can mint only the service-account tokens Federated issuance needs (issue 11, item 5), on the
 * real local API server (1.20): the operator's admission webhook (operator/admission, served over HTTPS with
 * its own self-signed certificate, which it publishes in the caBundle under the shipped operator RBAC), the
 * shipped ValidatingWebhookConfiguration (config/webhook) pointed at it by URL (the local control plane has
 * no Service routing), and the agent's own credential: a token for its ServiceAccount under the shipped
 * agent ClusterRole (config/rbac), bound to an agent Pod scheduled to node-a.
 *
 * The webhook configuration is limited to this file's namespaces (and kube-system, labelled for the run), so
 * a run that dies half-way can't break TokenRequests elsewhere on the shared server. 1.20 has no
 * matchConditions, so they are left out, as components/admission-pre-1.28 does.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, RbacAuthorizationV1Api, setHeaderOptions, type V1Pod, type V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
import { get } from '../../dev/local-cluster/controlplane/controlplane.js';
import { repoRoot, parseObjects } from '../../dev/local-cluster/kubelet/render.js';
import { freePort, freePorts } from '../../dev/support/ports.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { waitFor } from '../../dev/support/wait.js';
import type { ManagedProcess } from '../../dev/support/processes.js';
import { operatorEnv, type OperatorEnv } from './harness.js';
import { createLogger } from '../../lib/log.js';
import { startAgentTokenAdmission, WEBHOOK_PATH, type AgentTokenAdmission } from '../../operator/admission/index.js';
import { FederatedIssuer } from '../../agent/issuance/federated.js';
import { UpstreamError } from '../../agent/issuance/types.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { kubeConfigApiServer } from '../../lib/k8s/kubeconfig.js';

const AUDIENCE = 'api://AzureADTokenExchange';
const CONFIGURATION = 'podidentity-agent-token-requests';
const AGENT_SA = 'podidentity-agent';
const run = randomBytes(3).toString('hex');
const LABEL = 'podid-test-agent-token-admission';
const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let cluster: TestCluster;
let core: CoreV1Api;
let rbac: RbacAuthorizationV1Api;
let admissionApi: AdmissionregistrationV1Api;
let agentNs: string;
let appNs: string;
let agentToken: string;
let webhookPort: number;
let webhook: AgentTokenAdmission | undefined;
const uids: Record<string, string> = {};
const cleanup: (() => Promise<unknown>)[] = [];

function shipped(file: string) {
  return parseObjects(readFileSync(join(repoRoot, file), 'utf8'));
}

/** Pods carry the label that selects the PodIdentity "web" (created in `before`) unless told otherwise. */
async function createPod(namespace: string, name: string, serviceAccountName: string, nodeName: string, hostNetwork = false, labels: Record<string, string> = { 'podidentity.dev/identity': 'web' }): Promise<string> {
  const body: V1Pod = { metadata: { name, labels }, spec: { nodeName, serviceAccountName, hostNetwork, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } };
  const pod = await core.createNamespacedPod({ namespace, body });
  return pod.metadata!.uid!;
}

async function createServiceAccount(namespace: string, name: string): Promise<void> {
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

interface Spec {
  audiences?: string[];
  expirationSeconds?: number;
  boundObjectRef?: { apiVersion: string; kind: string; name: string; uid?: string };
}

/** POST serviceaccounts/<sa>/token as `token` (the agent's credential unless told otherwise). */
async function tokenRequest(namespace: string, serviceAccount: string, spec: Spec, token = agentToken): Promise<{ status: number; message: string; token?: string }> {
  const res = await get(`${cluster.server}/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
    ca: cluster.caPem,
    token,
    method: 'POST',
    body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec }),
  });
  const body = JSON.parse(res.body) as { message?: string; status?: { token?: string } };
  return { status: res.status, message: body.message ?? '', ...(body.status?.token ? { token: body.status.token } : {}) };
}

function claims(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function legit(overrides: Spec = {}): Spec {
  return { audiences: [AUDIENCE], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web-a', uid: uids['web-a']! }, ...overrides };
}

function assertRefusedByWebhook(res: { status: number; message: string; token?: string }, why: RegExp): void {
  assert.ok(res.token === undefined, 'no token was issued'); // never print one
  assert.equal(res.status, 403, res.message);
  assert.match(res.message, /admission webhook "agent-token-requests\.podidentity\.dev" denied the request/);
  assert.match(res.message, why);
}

async function startWebhook(operatorKc: KubeConfig): Promise<AgentTokenAdmission> {
  return startAgentTokenAdmission({
    kubeConfig: operatorKc,
    logger: createLogger('admission-test', 'error'),
    port: webhookPort,
    host: '127.0.0.1',
    hosts: ['127.0.0.1'],
    configurationName: CONFIGURATION,
    agent: { namespace: agentNs, serviceAccount: AGENT_SA },
    podName: `operator-${run}`,
    podNamespace: agentNs,
    republishIntervalMs: 1000,
  });
}

function kubeConfigFor(token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: cluster.server, caData: Buffer.from(cluster.caPem).toString('base64') }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'c', cluster: 'local', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}

before(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
  admissionApi = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
  agentNs = await cluster.namespace('agent', { [LABEL]: run });
  appNs = await cluster.namespace('team', { [LABEL]: run });
  await core.patchNamespace({ name: 'kube-system', body: { metadata: { labels: { [LABEL]: run } } } }, mergePatch());
  cleanup.push(() => core.patchNamespace({ name: 'kube-system', body: { metadata: { labels: { [LABEL]: null } } } }, mergePatch()));

  // The shipped agent and operator ClusterRoles, bound to this run's ServiceAccounts.
  for (const [file, sa] of [['config/rbac/agent_role.yaml', AGENT_SA], ['config/rbac/operator_role.yaml', 'podidentity-operator']] as const) {
    const role = shipped(file)[0]!;
    const name = `${role.metadata.name}-${run}`;
    await rbac.createClusterRole({ body: { ...role, metadata: { name } } });
    await rbac.createClusterRoleBinding({ body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects: [{ kind: 'ServiceAccount', name: sa, namespace: agentNs }] } });
    cleanup.push(() => rbac.deleteClusterRoleBinding({ name }), () => rbac.deleteClusterRole({ name }));
    await createServiceAccount(agentNs, sa);
  }

  // The agent's own pod on node-a, and its credential bound to that pod (as the kubelet would project it).
  uids['agent'] = await createPod(agentNs, 'agent-node-a', AGENT_SA, 'node-a');
  const minted = await tokenRequest(agentNs, AGENT_SA, { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'agent-node-a', uid: uids['agent'] } }, cluster.token);
  assert.equal(minted.status, 201, minted.message);
  agentToken = minted.token!;
  const operatorMinted = await tokenRequest(agentNs, 'podidentity-operator', {}, cluster.token);
  assert.equal(operatorMinted.status, 201, operatorMinted.message);

  for (const sa of ['web', 'other']) await createServiceAccount(appNs, sa);
  // The PodIdentity that selects the app's pods (default selector podidentity.dev/identity=web). No operator
  // reconciles it here; the webhook only needs it to exist.
  await cluster.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'podidentity.dev', version: 'v1alpha1', namespace: appNs, plural: 'podidentities',
    body: { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentity', metadata: { name: 'web' }, spec: { identity: { managed: {} }, mode: 'Federated' } },
  });
  uids['web-a'] = await createPod(appNs, 'web-a', 'web', 'node-a');
  uids['web-b'] = await createPod(appNs, 'web-b', 'web', 'node-b');
  uids['other-a'] = await createPod(appNs, 'other-a', 'other', 'node-a');
  await createServiceAccount('kube-system', `podid-victim-${run}`);
  cleanup.push(() => core.deleteNamespacedServiceAccount({ namespace: 'kube-system', name: `podid-victim-${run}` }));

  // The shipped webhook configuration, reached by URL on loopback, limited to this run's namespaces.
  webhookPort = await freePort();
  const vwc = shipped('config/webhook/validating_webhook_configuration.yaml')[0]! as unknown as V1ValidatingWebhookConfiguration;
  for (const w of vwc.webhooks ?? []) {
    w.clientConfig = { url: `https://127.0.0.1:${webhookPort}${WEBHOOK_PATH}` };
    w.namespaceSelector = { matchLabels: { [LABEL]: run } };
    // 1.20 has no matchConditions (components/admission-pre-1.28): the webhook itself must let everyone but
    // the agent through, which the test of other identities below checks.
    delete w.matchConditions;
  }
  await admissionApi.deleteValidatingWebhookConfiguration({ name: CONFIGURATION }).catch(() => undefined);
  await admissionApi.createValidatingWebhookConfiguration({ body: vwc });
  cleanup.push(() => admissionApi.deleteValidatingWebhookConfiguration({ name: CONFIGURATION }));

  // The webhook, as the operator runs it, with the operator's shipped RBAC.
  webhook = await startWebhook(kubeConfigFor(operatorMinted.token!));
  await waitFor('the webhook certificate is in the caBundle and the API server calls the webhook', async () => {
    if (!webhook!.ready()) return false;
    const res = await tokenRequest(appNs, 'web', legit({ audiences: ['https://kubernetes.default.svc'] }));
    return res.status === 403 && /denied the request/.test(res.message);
  }, { timeoutMs: 30_000, intervalMs: 200 });
});

after(async () => {
  await webhook?.close();
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

describe('the agent’s credentials mint only what Federated issuance needs', () => {
  test('the legitimate TokenRequest (audience, bound to a pod on the agent’s node, its own SA, 600 s) is allowed', async () => {
    const res = await tokenRequest(appNs, 'web', legit());
    assert.equal(res.status, 201, res.message);
    const c = claims(res.token!);
    assert.deepEqual(c['aud'], [AUDIENCE]);
    assert.equal(c['sub'], `system:serviceaccount:${appNs}:web`);
    assert.deepEqual((c['kubernetes.io'] as { pod: { name: string; uid: string } }).pod, { name: 'web-a', uid: uids['web-a'] });
    assert.ok((c['exp'] as number) - (c['iat'] as number) <= 600);
  });

  test('agent token with another audience (e.g. the API server’s) is refused', async () => {
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ audiences: ['https://kubernetes.default.svc'] })), /spec\.audiences/);
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ audiences: [AUDIENCE, cluster.issuer] })), /spec\.audiences/);
    // No audience means the API server's own: an API credential for the pod's service account.
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', { expirationSeconds: 600, boundObjectRef: legit().boundObjectRef! }), /spec\.audiences/);
  });

  test('agent token without a pod binding is refused', async () => {
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', { audiences: [AUDIENCE], expirationSeconds: 600 }), /boundObjectRef must bind/);
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web-a' } })), /uid is required/);
  });

  test('agent token bound to a pod on another node is refused', async () => {
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web-b', uid: uids['web-b']! } })), /node "node-b", not on the agent's node node-a/);
  });

  test('agent token for a service account other than the bound pod’s is refused', async () => {
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'other-a', uid: uids['other-a']! } })), /runs as service account other, not web/);
    assertRefusedByWebhook(await tokenRequest(appNs, 'other', legit()), /runs as service account web, not other/);
  });

  test('agent token for a kube-system service account is refused', async () => {
    const victim = `podid-victim-${run}`;
    assertRefusedByWebhook(await tokenRequest('kube-system', victim, { expirationSeconds: 3600 }), /spec\.audiences/);
    assertRefusedByWebhook(await tokenRequest('kube-system', victim, { audiences: [AUDIENCE], expirationSeconds: 600 }), /boundObjectRef must bind/);
    assertRefusedByWebhook(await tokenRequest('kube-system', victim, legit()), /no pod kube-system\/web-a with uid/);
  });

  test('agent token with a long lifetime is refused', async () => {
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ expirationSeconds: 3600 })), /at most 600, got 3600/);
    // Omitted: the API server defaults it to 3600 before admission.
    const { expirationSeconds: _omitted, ...defaulted } = legit();
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', defaulted), /at most 600, got 3600/);
  });

  test('agent token bound to a finished pod on its node (a Job pod that Succeeded or Failed) is refused', async () => {
    // The pod stays on node-a with its service account, but it runs no more: nothing on the node may still
    // ask for its identity, so a stolen agent credential must not mint one for it.
    for (const phase of ['Succeeded', 'Failed']) {
      const name = `done-${phase.toLowerCase()}-a`;
      const uid = await createPod(appNs, name, 'web', 'node-a');
      await core.patchNamespacedPodStatus({ namespace: appNs, name, body: { status: { phase } } }, mergePatch());
      assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } })), new RegExp(`has finished \\(phase ${phase}\\)`));
    }
  });

  test('agent token bound to a hostNetwork pod on its node (a kube-system DaemonSet such as the CNI or kube-proxy) is refused', async () => {
    // hostNetwork pods share the node's IP: the agent never attributes a caller to one, so it never needs
    // their tokens, and they are the node's most privileged workloads.
    const victim = `podid-victim-${run}`;
    const name = `podid-hostnet-${run}`;
    const uid = await createPod('kube-system', name, victim, 'node-a', true);
    cleanup.push(() => core.deleteNamespacedPod({ namespace: 'kube-system', name, gracePeriodSeconds: 0 }));
    assertRefusedByWebhook(await tokenRequest('kube-system', victim, legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } })), /uses the host network/);
  });

  test('agent token for the operator’s service account (a replica on its node; in AKS its workload identity assigns Azure roles) is refused', async () => {
    // An operator pod on node-a runs, is not hostNetwork, and has its own service account: everything else
    // in the policy holds, yet its token exchanges for the operator's Azure identity.
    const name = `operator-node-a-${run}`;
    const uid = await createPod(agentNs, name, 'podidentity-operator', 'node-a');
    assertRefusedByWebhook(await tokenRequest(agentNs, 'podidentity-operator', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } })), /service accounts of its own namespace/);
  });

  test('agent token bound to a pod on its node that no PodIdentity selects (a workload identity federated outside this operator) is refused', async () => {
    // Running, not hostNetwork, its own service account, on node-a: only the missing PodIdentity says the
    // agent will never serve it.
    const name = `unselected-a-${run}`;
    const uid = await createPod(appNs, name, 'web', 'node-a', false, { app: 'batch' });
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } })), new RegExp(`no PodIdentity in namespace ${appNs} selects pod ${name} in Federated mode`));
  });

  test('a mirror (static) pod can’t carry a service account for the agent to mint (the API server’s ServiceAccount admission refuses it)', async () => {
    // A node can create mirror pods of its static pods; if one could name a service account, a compromised
    // node would plant a pod the webhook accepts. Pinned here because the webhook relies on it.
    const body: V1Pod = { metadata: { name: `mirror-a-${run}`, annotations: { 'kubernetes.io/config.mirror': 'static' }, labels: { 'podidentity.dev/identity': 'web' } }, spec: { nodeName: 'node-a', serviceAccountName: 'web', automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } };
    const err = await core.createNamespacedPod({ namespace: appNs, body }).then(() => undefined, (e: unknown) => e as { code?: number; body?: unknown });
    assert.ok(err, 'a mirror pod naming a service account was created');
    assert.match(String(typeof err.body === 'string' ? err.body : JSON.stringify(err.body)), /mirror pod may not reference service accounts/);
  });

  test('the node comes from the agent’s own pod-bound credential: the agent of node-b gets node-b’s pod, not node-a’s', async () => {
    const uid = await createPod(agentNs, 'agent-node-b', AGENT_SA, 'node-b');
    const minted = await tokenRequest(agentNs, AGENT_SA, { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'agent-node-b', uid } }, cluster.token);
    assert.equal(minted.status, 201, minted.message);
    const nodeB = minted.token!;
    const ok = await tokenRequest(appNs, 'web', legit({ boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web-b', uid: uids['web-b']! } }), nodeB);
    assert.equal(ok.status, 201, ok.message);
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit(), nodeB), /node "node-a", not on the agent's node node-b/);
  });

  test('an agent credential that is not bound to a pod (no pod-name/pod-uid in userInfo.extra) mints nothing', async () => {
    const unbound = await tokenRequest(agentNs, AGENT_SA, {}, cluster.token);
    assert.equal(unbound.status, 201, unbound.message);
    assertRefusedByWebhook(await tokenRequest(appNs, 'web', legit(), unbound.token!), /not bound to a pod/);
  });

  test('other identities keep the API server’s own rules (the webhook constrains only the agent)', async () => {
    const res = await tokenRequest(appNs, 'web', { audiences: ['https://kubernetes.default.svc'] }, cluster.token);
    assert.equal(res.status, 201, res.message);
  });

  test('webhook unavailable: the agent’s TokenRequest is refused (fail closed) and issuance answers 503 with Retry-After', async () => {
    await webhook!.close();
    webhook = undefined;
    const res = await tokenRequest(appNs, 'web', legit());
    assert.ok(res.token === undefined, 'no token while the webhook is down');
    assert.equal(res.status, 500, res.message);
    assert.match(res.message, /failed calling webhook "agent-token-requests\.podidentity\.dev"/);

    const issuer = new FederatedIssuer({ apiServer: kubeConfigApiServer(kubeConfigFor(agentToken)), authorityHost: 'https://login.invalid', metrics: new AgentMetrics(), timeoutMs: 8000 });
    const identity = { namespace: appNs, name: 'web', mode: 'Federated' as const, clientId: '11111111-1111-4111-8111-111111111111', principalId: '22222222-2222-4222-8222-222222222222', tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47', resourceId: '/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web' };
    const pod = { namespace: appNs, name: 'web-a', uid: uids['web-a']!, serviceAccountName: 'web', labels: {}, nodeName: 'node-a', hostNetwork: false, phase: 'Running', ips: ['10.0.0.9'] };
    const err = await issuer.issue({ identity, resource: 'https://vault.azure.net', pod }).catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.upstream, 'kubernetes');
    assert.equal(err.status, 503);
    assert.ok((err.retryAfterSeconds ?? 0) > 0, 'Retry-After');
  });
});

describe('the operator process (--webhook-port) serves the webhook', () => {
  let env: OperatorEnv | undefined;
  let operator: ManagedProcess | undefined;
  const name = `${CONFIGURATION}-${run}`;
  const label = `${LABEL}-process`;

  after(async () => {
    await operator?.stop();
    await admissionApi.deleteValidatingWebhookConfiguration({ name }).catch(() => undefined);
    await env?.emu.stop();
  });

  test('it becomes Ready with its certificate in the caBundle, and the API server calls it to refuse the agent a wrong token', async () => {
    env = await operatorEnv();
    const ns = await cluster.namespace('proc', { [label]: run });
    await createServiceAccount(ns, 'web');
    const [port, metricsPort] = await freePorts(2);
    const vwc = shipped('config/webhook/validating_webhook_configuration.yaml')[0]! as unknown as V1ValidatingWebhookConfiguration;
    vwc.metadata = { name };
    for (const w of vwc.webhooks ?? []) {
      w.clientConfig = { url: `https://127.0.0.1:${port}${WEBHOOK_PATH}` };
      w.namespaceSelector = { matchLabels: { [label]: run } };
      delete w.matchConditions;
    }
    await admissionApi.createValidatingWebhookConfiguration({ body: vwc });
    operator = env.startOperator('operator-webhook', [
      '--webhook-port', String(port), '--webhook-configuration', name, '--webhook-hosts', '127.0.0.1',
      '--agent-service-account', `${agentNs}:${AGENT_SA}`, '--metrics-port', String(metricsPort),
    ]);
    await waitFor('operator /readyz', async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200, { timeoutMs: 60_000, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n${operator?.output().slice(-3000)}`);
    });
    const published = await admissionApi.readValidatingWebhookConfiguration({ name });
    assert.match(Buffer.from(published.webhooks![0]!.clientConfig.caBundle ?? '', 'base64').toString(), /BEGIN CERTIFICATE/);
    const res = await waitFor('the API server calls the operator process', async () => {
      const r = await tokenRequest(ns, 'web', { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 600 });
      return r.status === 403 ? r : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    assertRefusedByWebhook(res, /spec\.audiences/);
  });
});
