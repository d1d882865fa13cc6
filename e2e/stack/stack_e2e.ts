import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { CONDITION_CREDENTIAL_PROPAGATED, GROUP, PODIDENTITY_PLURAL, VERSION, type PodIdentity } from '../../lib/api/types.js';
import { checkMetricsReferenced } from '../deploy/metrics-contract.js';
import { netnsAvailable } from '../../dev/local-cluster/netns/netns.js';
import { waitFor } from '../../dev/support/wait.js';
import { REPO, startStack, type PodHandle, type Stack } from '../../dev/local-cluster/stack.js';

/** `make run`'s setup, headless: the whole product with real interception in network namespaces. */
const run = promisify(execFile);
const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';
const TOKEN_URL = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/';
const EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';
const WEBHOOK_DENIED = /admission webhook "agent-token-requests\.podidentity\.dev" denied the request/;

describe('the whole product, as make run starts it', { skip, timeout: 600_000 }, () => {
  let stack: Stack;
  let custom: CustomObjectsApi;

  before(async () => {
    stack = await startStack({ netns: true, netnsPrefix: `podid-${randomBytes(2).toString('hex')}-` });
    custom = stack.kc.makeApiClient(CustomObjectsApi);
  });
  after(async () => {
    await stack?.stop();
  });

  const pod = (name: string): PodHandle => stack.pods.find((p) => p.name === name)!;
  const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', stack.kubeconfigPath, ...args], { encoding: 'utf8' });
  const podIdentity = async (namespace: string, name: string) =>
    (await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PODIDENTITY_PLURAL, name })) as PodIdentity;

  async function curl(p: PodHandle, url = TOKEN_URL): Promise<{ status: number; body: Record<string, string> }> {
    const { stdout } = await run('ip', ['netns', 'exec', p.netns!, 'curl', '-s', '-m', '10', '-w', '\n%{http_code}', '-H', 'Metadata: true', url], { encoding: 'utf8' });
    const lines = stdout.split('\n');
    const status = Number(lines.pop());
    return { status, body: JSON.parse(lines.join('\n') || '{}') as Record<string, string> };
  }
  const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, string>;

  test('kubectl wait --for=condition=Ready pid --all succeeds', async () => {
    const { stdout } = await kubectl('wait', '--for=condition=Ready', 'pid', '--all', '-A', '--timeout=120s');
    assert.equal(stdout.trim().split('\n').length, stack.pods.length);
    assert.match(stdout, /podidentity\.podidentity\.dev\/rgapi condition met/);
  });

  test('each demo pod gets a token for its own identity through real interception', async () => {
    for (const p of stack.pods) {
      const res = await curl(p);
      assert.equal(res.status, 200, `${p.namespace}/${p.name}: ${JSON.stringify(res.body)}`);
      const status = (await podIdentity(p.namespace, p.identity)).status;
      const claims = claimsOf(res.body['access_token']!);
      assert.equal(claims['oid'], status?.principalId, `${p.namespace}/${p.name} token is its identity's`);
      assert.equal(claims['appid'], status?.clientId);
      assert.equal(res.body['client_id'], status?.clientId);
    }
  });

  test("each Federated PodIdentity records its first token exchange: the agent's Event (events: create) read by the operator (events: list, watch) under their own RBAC", async () => {
    let federated = 0;
    for (const p of stack.pods) {
      const status = await waitFor(
        `${p.namespace}/${p.identity} status.firstSuccessfulExchange`,
        async () => {
          const s = (await podIdentity(p.namespace, p.identity)).status;
          if (s?.mode !== 'Federated') return s;
          const propagated = s.conditions?.find((c) => c.type === CONDITION_CREDENTIAL_PROPAGATED);
          return s.firstSuccessfulExchange && propagated?.status === 'True' ? s : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      if (status?.mode !== 'Federated') continue;
      federated++;
      assert.ok(!Number.isNaN(Date.parse(status.firstSuccessfulExchange!.time)), JSON.stringify(status.firstSuccessfulExchange));
      assert.ok(stack.nodes.some((n) => n.name === status.firstSuccessfulExchange!.node), `the node that exchanged: ${JSON.stringify(status.firstSuccessfulExchange)}`);
    }
    assert.ok(federated > 0, 'the demo has Federated PodIdentities');
  });

  /** The agent-token webhook's allowed decisions, summed over the operator replicas (each serves it). */
  async function webhookAllowed(): Promise<number> {
    let total = 0;
    for (const operator of stack.operators) {
      const text = await (await fetch(operator.url('metrics', '/metrics'))).text();
      total += Number(/^podidentity_operator_admission_decisions_total\{outcome="allowed"\} (\S+)$/m.exec(text)?.[1] ?? 0);
    }
    return total;
  }

  /** A client that authenticates with the token the harness mounted into `pod` (its bound ServiceAccount token). */
  function clientAs(pod: { namespace: string; name: string }): CoreV1Api {
    const token = readFileSync(join(stack.dir, 'pods', `${pod.namespace}_${pod.name}`, 'serviceaccount', 'token'), 'utf8');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'local', server: stack.cp.server, caData: Buffer.from(stack.cp.caPem).toString('base64') }],
      users: [{ name: pod.name, token }],
      contexts: [{ name: 'local', cluster: 'local', user: pod.name }],
      currentContext: 'local',
    });
    return kc.makeApiClient(CoreV1Api);
  }

  test("the agent's Federated issuance goes through the agent-token admission webhook, reached at its Service", async () => {
    // As applied for a 1.20 API server: Service-based, failing closed, no matchConditions, the operator's CA.
    const configuration = await stack.kc.makeApiClient(AdmissionregistrationV1Api).readValidatingWebhookConfiguration({ name: 'podidentity-agent-token-requests' });
    const webhook = configuration.webhooks?.[0];
    assert.equal(webhook?.clientConfig.service?.name, 'podidentity-webhook');
    assert.equal(webhook?.clientConfig.url, undefined);
    assert.equal(webhook?.failurePolicy, 'Fail');
    assert.ok(webhook?.clientConfig.caBundle, 'the operator put its certificate in the caBundle');
    const endpoints = await stack.kc.makeApiClient(CoreV1Api).readNamespacedEndpoints({ namespace: 'podidentity-system', name: 'podidentity-webhook' });
    assert.deepEqual(
      endpoints.subsets?.flatMap((s) => s.addresses?.map((a) => `${a.ip}:${s.ports?.find((p) => p.name === 'webhook')?.port}`) ?? []).sort(),
      stack.operators.map((o) => `${o.ip}:9443`).sort(),
      'the webhook Service resolves to the ready operator pods',
    );

    // A resource no other test asks for: a cache miss, so the agent mints a new assertion for the pod.
    const p = pod('web');
    const before = await webhookAllowed();
    const res = await curl(p, `${TOKEN_URL.replace(/resource=.*$/, '')}resource=https://podid-${randomBytes(3).toString('hex')}.example`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const status = (await podIdentity(p.namespace, p.identity)).status;
    assert.equal(claimsOf(res.body['access_token']!)['oid'], status?.principalId, "the token is the pod's identity's");
    assert.ok((await webhookAllowed()) > before, "the agent's TokenRequest was admitted by the webhook");
  });

  test("the agent's own credential is refused the operator's token by the webhook, and allowed a pod's on its node", async () => {
    const node = stack.nodes[0]!;
    const asAgent = clientAs(node.agent);
    const stealOperatorToken = (spec: object) => asAgent.createNamespacedServiceAccountToken({ namespace: 'podidentity-system', name: 'podidentity-operator', body: { spec } });
    const denied = (err: { code?: number; body?: unknown }) => {
      assert.equal(err.code, 403);
      assert.match((JSON.parse(String(err.body)) as { message?: string }).message ?? '', WEBHOOK_DENIED);
      return true;
    };
    // The API server audience, unbound: the operator's cluster-wide credential.
    await assert.rejects(stealOperatorToken({ audiences: [], expirationSeconds: 3600 }), denied);
    // The exchange audience, unbound: the operator's Azure identity, wherever its federated credential allows.
    await assert.rejects(stealOperatorToken({ audiences: [EXCHANGE_AUDIENCE], expirationSeconds: 600 }), denied);
    // Bound to a pod on another node (the demo pods there run under other service accounts).
    const elsewhere = stack.pods.find((p) => p.node !== node)!;
    const elsewhereUid = (await stack.kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace: elsewhere.namespace, name: elsewhere.name })).metadata?.uid;
    await assert.rejects(
      asAgent.createNamespacedServiceAccountToken({ namespace: elsewhere.namespace, name: elsewhere.serviceAccount, body: { spec: { audiences: [EXCHANGE_AUDIENCE], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: elsewhere.name, uid: elsewhereUid } } } }),
      denied,
    );
    // What issuance needs is allowed to the same credential: RBAC grants the verb, the webhook draws the line.
    const local = stack.pods.find((p) => p.node === node)!;
    const uid = (await stack.kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace: local.namespace, name: local.name })).metadata?.uid;
    const minted = await asAgent.createNamespacedServiceAccountToken({ namespace: local.namespace, name: local.serviceAccount, body: { spec: { audiences: [EXCHANGE_AUDIENCE], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: local.name, uid } } } });
    assert.ok(minted.status?.token, `a token for ${local.namespace}/${local.name} on the agent's node`);
  });

  test('the origin story: the rgapi pod lists resource groups with its IMDS token', async () => {
    const token = (await curl(pod('rgapi'))).body['access_token']!;
    const url = `${stack.armEndpointForPods}/subscriptions/${stack.emu.subscriptionId}/resourcegroups?api-version=2021-04-01`;
    const { stdout } = await run('ip', ['netns', 'exec', pod('rgapi').netns!, 'curl', '-s', '-m', '10', '--cacert', stack.emu.caCertPath, '-H', `Authorization: Bearer ${token}`, url], { encoding: 'utf8' });
    const names = (JSON.parse(stdout) as { value: { name: string }[] }).value.map((g) => g.name);
    assert.ok(names.includes('podid-demo'), stdout);
  });

  test('the operator and agents run the shipped command from dist/, under their own bound ServiceAccount tokens', () => {
    const workloads = [...stack.operators.map((p) => ({ pod: p, sa: 'podidentity-operator', script: 'dist/operator/main.js' })), ...stack.nodes.map((n) => ({ pod: n.agent, sa: 'podidentity-agent', script: 'dist/agent/main.js' }))];
    for (const { pod, sa, script } of workloads) {
      const pid = pod.container().process!.pid;
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      assert.equal(argv[0], process.execPath, `${pod.name} runs node itself`);
      assert.ok(argv.some((a) => a.endsWith(script)), `${pod.name} runs ${script}: ${argv.join(' ')}`);
      assert.ok(!argv.some((a) => /tsx/.test(a)), `${pod.name} runs no tsx: ${argv.join(' ')}`);
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(!environ.some((e) => e.startsWith('KUBECONFIG=')), `${pod.name} has no kubeconfig: in-cluster config`);
      const token = readFileSync(join(stack.dir, 'pods', `${pod.namespace}_${pod.name}`, 'serviceaccount', 'token'), 'utf8');
      const claims = claimsOf(token) as unknown as { sub: string; 'kubernetes.io': { pod: { name: string } } };
      assert.equal(claims.sub, `system:serviceaccount:podidentity-system:${sa}`);
      assert.equal(claims['kubernetes.io'].pod.name, pod.name, 'the token is bound to its pod');
    }
  });

  test("each metrics Service selects its workload's pods, at a port that serves /metrics", async () => {
    const services = stack.objects.filter((o) => o.kind === 'Service' && /metrics/.test(o.metadata.name));
    assert.equal(services.length, 2);
    for (const service of services) {
      const endpoints = stack.kubelet.serviceEndpoints(service, 'metrics');
      assert.ok(endpoints.length > 0, `${service.metadata.name} has endpoints`);
      // What the API server (and Prometheus' Kubernetes discovery) sees: the Endpoints object, named port included.
      const published = await stack.kc.makeApiClient(CoreV1Api).readNamespacedEndpoints({ namespace: 'podidentity-system', name: service.metadata.name });
      assert.deepEqual(
        published.subsets?.flatMap((s) => (s.addresses ?? []).map((a) => `${a.targetRef?.name} ${a.ip}:${s.ports?.find((p) => p.name === 'metrics')?.port}`)).sort(),
        endpoints.map((e) => `${e.pod.name} ${e.ip}:${e.port}`).sort(),
      );
      for (const { ip, port } of endpoints) {
        const res = await fetch(`http://${ip}:${port}/metrics`);
        assert.equal(res.status, 200, `${service.metadata.name} → ${ip}:${port}`);
        assert.match(await res.text(), /podidentity_(operator|agent)_/);
      }
    }
  });

  test('an agent killed on its node comes back, as restartPolicy Always brings it back', async () => {
    const node = stack.nodes[1]!;
    const agent = node.agent.container();
    const before = agent.restartCount;
    agent.process!.kill('SIGKILL');
    await waitFor('the agent to be restarted and ready', () => agent.restartCount === before + 1 && agent.ready, { timeoutMs: 40_000, intervalMs: 200 });
    const p = stack.pods.find((x) => x.node === node)!;
    const res = await curl(p);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const pod = await stack.kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace: node.agent.namespace, name: node.agent.name });
    assert.equal(pod.status?.containerStatuses?.[0]?.restartCount, before + 1, 'the Pod status counts the restart');
  });

  test('every metric the dashboard and the alerts use is exposed, with its labels', async () => {
    // A series shows its labels only once it has a sample, so exercise the throttle path first: one ARM 429
    // on the identity write that a spec change triggers.
    stack.emu.faults.set({ match: { method: 'GET', route: 'identities.get' }, status: 429, retryAfterSeconds: 1, times: 1 });
    await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: 'demo', plural: PODIDENTITY_PLURAL, name: 'web', body: { spec: { identity: { managed: { tags: { team: 'storefront', touched: 'yes' } } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const operatorMetricsUrl = await stack.operatorMetricsUrl();
    const scrape = () => Promise.all([operatorMetricsUrl, ...stack.nodes.map((n) => n.metricsUrl)].map(async (url) => (await fetch(url)).text()));
    const scrapes = await waitFor('throttle and Ready series', async () => {
      const texts = await scrape();
      return /podidentity_operator_azure_throttled_total\{/.test(texts[0]!) && /podidentity_operator_podidentities\{/.test(texts[0]!) ? texts : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    const { problems, references } = checkMetricsReferenced(scrapes, join(REPO, 'config/grafana/podidentity-dashboard.json'), join(REPO, 'config/prometheus/alerts.yaml'));
    assert.ok(references.length > 10);
    assert.deepEqual(problems, []);
  });

  test('deleting a PodIdentity removes its Azure identity, and its pod is refused afterwards', async () => {
    const before = await podIdentity('rgapi', 'rgapi');
    const resourceId = before.status?.resourceId;
    assert.ok(resourceId);
    assert.ok(stack.emu.state.identities().some((i) => i.id === resourceId));
    await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'rgapi', plural: PODIDENTITY_PLURAL, name: 'rgapi' });
    await waitFor('the identity to be deleted in Azure', () => !stack.emu.state.identities().some((i) => i.id === resourceId), { timeoutMs: 60_000 });
    assert.deepEqual(
      stack.emu.state.roleAssignments().filter((a) => a.principalId === before.status?.principalId),
      [],
      'no role assignment of the deleted identity is left',
    );
    const refused = await waitFor('the rgapi pod to be refused', async () => {
      const res = await curl(pod('rgapi'));
      return res.status === 400 ? res : undefined;
    }, { timeoutMs: 30_000 });
    assert.equal(refused.body['error'], 'invalid_request');
    assert.match(refused.body['error_description'] ?? '', /Identity not found/);
  });
});
