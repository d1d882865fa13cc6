/**
 * Issue 11 §6, connections: the real agent (agent/main.ts, default limits, no iptables) on loopback against
 * the real API server, flooded with real slow sockets. Clients "are" pods by binding the pod's 127.x source
 * address, which the agent attributes exactly as a DNATed pod connection.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { freePorts } from '../../dev/support/ports.js';
import { startProcess, type ManagedProcess } from '../../dev/support/processes.js';
import { waitFor } from '../../dev/support/wait.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TOKEN_PATH = '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net';
const LEGIT_POD_IP = '127.0.3.1';
/** The agent's container memory limit (config/agent/daemonset.yaml). */
const MEMORY_LIMIT_BYTES = 384 * 2 ** 20;

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A client that opens a connection and sends its headers one line a second, never finishing (slowloris). */
class SlowClients {
  readonly sockets: Socket[] = [];
  private closedCount = 0;
  private readonly drip: NodeJS.Timeout;

  constructor(private readonly port: number) {
    this.drip = setInterval(() => {
      for (const s of this.sockets) if (!s.destroyed && s.writable) s.write('X-Slow: 1\r\n');
    }, 1000);
  }

  async open(source: string, count: number): Promise<void> {
    await Promise.all(
      Array.from({ length: count }, () => new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: this.port, localAddress: source });
        this.sockets.push(s);
        s.on('error', () => undefined);
        s.once('close', () => {
          this.closedCount++;
          resolve();
        });
        s.once('connect', () => {
          s.write(`GET ${TOKEN_PATH} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n`);
          resolve();
        });
      })),
    );
  }

  get open_(): number {
    return this.sockets.length - this.closedCount;
  }

  get closed(): number {
    return this.closedCount;
  }

  stop(): void {
    clearInterval(this.drip);
    for (const s of this.sockets) s.destroy();
  }
}

describe('agent under connection exhaustion (real sockets)', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let agent: ManagedProcess;
  let port: number;
  let metricsPort: number;
  let ns: string;
  let core: CoreV1Api;
  let nodeName: string;

  before(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await cluster.namespace('exhaust');
    nodeName = `exhaust-node-${ns.slice(-6)}`;
    // No controller-manager runs: the service account admission needs the account to exist.
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'default' } } });
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'legit' }, spec: { nodeName, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } },
    });
    await core.patchNamespacedPodStatus(
      { namespace: ns, name: 'legit', body: { status: { phase: 'Running', podIP: LEGIT_POD_IP, podIPs: [{ ip: LEGIT_POD_IP }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const [agentPort, agentMetricsPort] = await freePorts(2);
    port = agentPort!;
    metricsPort = agentMetricsPort!;
    // Default limits (what the DaemonSet runs), so the test shows the defaults hold.
    agent = startProcess('agent', process.execPath, [
      '--import',
      'tsx',
      join(REPO, 'agent/main.ts'),
      'run',
      `--node-name=${nodeName}`,
      '--node-ip=127.0.0.1',
      `--listen-port=${port}`,
      '--metrics-address=127.0.0.1',
      `--metrics-port=${metricsPort}`,
      `--kubeconfig=${cluster.kubeconfigPath}`,
      '--authority-host=https://127.0.0.1:9',
      '--upstream-imds=http://127.0.0.1:9',
      '--manage-iptables=false',
      '--log-level=warn',
    ], { cwd: REPO });
    await waitFor('agent /readyz', async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200;
    }, { timeoutMs: 60_000, intervalMs: 100 });
  });

  after(async () => {
    await agent?.stop();
  });

  /** A token request from `from`, on a fresh connection or on `via`'s kept-alive one. */
  function tokenRequest(from: string, via: Agent | false = false): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: TOKEN_PATH, localAddress: from, headers: { Metadata: 'true' }, timeout: 5000, agent: via }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
      req.on('error', reject);
      req.end();
    });
  }

  /** One request from the legit pod: 400 naming the pod proves it was attributed and answered. */
  const legitRequest = (from = LEGIT_POD_IP) => tokenRequest(from);

  async function metric(name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  test('IP reuse at once, even by a pod of the same name: a new connection is never attributed to the deleted pod', async () => {
    const reusedIp = '127.0.6.1';
    const other = await cluster.namespace('exhaust-next');
    await core.createNamespacedServiceAccount({ namespace: other, body: { metadata: { name: 'default' } } });
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const runningAt = async (namespace: string) => {
      await core.createNamespacedPod({ namespace, body: { metadata: { name: 'reused' }, spec: { nodeName, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } } });
      await core.patchNamespacedPodStatus({ namespace, name: 'reused', body: { status: { phase: 'Running', podIP: reusedIp, podIPs: [{ ip: reusedIp }] } } }, mergePatch);
    };
    // Alternate the owner of one address between two namespaces, with the same pod name, as fast as the API
    // server allows; every answer must name the current owner's namespace, or nobody.
    let owner = ns;
    await runningAt(owner);
    for (let round = 0; round < 6; round++) {
      const first = await legitRequest(reusedIp);
      assert.equal(first.status, 400, first.body);
      assert.ok(first.body.includes(`namespace ${owner} selects pod reused`) || first.body.includes('no pod on node'), `round ${round}: ${first.body}`);
      const previous = owner;
      owner = owner === ns ? other : ns;
      await core.deleteNamespacedPod({ namespace: previous, name: 'reused', gracePeriodSeconds: 0 });
      await runningAt(owner);
      const at = await legitRequest(reusedIp);
      assert.ok(!at.body.includes(`namespace ${previous} `), `round ${round}: the deleted pod of ${previous} was served: ${at.body}`);
    }
    await core.deleteNamespacedPod({ namespace: owner, name: 'reused', gracePeriodSeconds: 0 });
  });

  test('IP reuse behind a terminating pod: once a pod is being deleted, no new connection from its address is attributed to it; its pinned one is', async () => {
    const ip = '127.0.6.2';
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    // A finalizer holds the pod in the terminating state, as the kubelet does while it tears the pod down
    // (its sandbox, and so its address, may already be released and taken by the next pod).
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'leaving', finalizers: ['example.invalid/hold'] }, spec: { nodeName, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } },
    });
    await core.patchNamespacedPodStatus({ namespace: ns, name: 'leaving', body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } }, mergePatch);
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const pinned = () => tokenRequest(ip, keepAlive);
    try {
      await waitFor('the pod attributed at its address', async () => (await legitRequest(ip)).body.includes(`namespace ${ns} selects pod leaving`), { timeoutMs: 10_000 });
      assert.match((await pinned()).body, /selects pod leaving/);
      await core.deleteNamespacedPod({ namespace: ns, name: 'leaving', gracePeriodSeconds: 0 });
      const fresh = await legitRequest(ip);
      assert.equal(fresh.status, 400, fresh.body);
      assert.match(fresh.body, /no pod on node/, 'a new connection from a terminating pod\'s address names nobody');
      assert.match((await pinned()).body, /selects pod leaving/, 'the connection it opened before is still its own');
    } finally {
      keepAlive.destroy();
      await core.patchNamespacedPod({ namespace: ns, name: 'leaving', body: { metadata: { finalizers: null } } }, mergePatch).catch(() => undefined);
    }
  });

  test('slowloris from one pod: connections past the per-source cap are closed at once, the rest at the header deadline; other pods are served', async () => {
    const slow = new SlowClients(port);
    try {
      await slow.open('127.0.4.1', 500);
      // Past the cap (100 per source by default) the agent closes connections as they arrive.
      await waitFor('connections past the per-source cap closed', () => slow.closed >= 400, { timeoutMs: 5000 });
      assert.ok(slow.open_ <= 100, `${slow.open_} slow connections from one source still open`);
      const during = await legitRequest();
      assert.equal(during.status, 400, during.body);
      assert.match(during.body, /selects pod legit/, 'the other pod was attributed and answered during the flood');
      // The headers never finish: every slow connection is closed at the 5 s header deadline, not held for ever.
      await waitFor('slow connections closed at the header deadline', () => {
        if (slow.open_ > 0) throw new Error(`${slow.open_} still open`);
        return true;
      }, { timeoutMs: 10_000, intervalMs: 100 });
      assert.equal(await metric('podidentity_agent_open_connections'), 0, 'the agent holds no connection any more');
      const perSource = await metric('podidentity_agent_rejections_total', '{reason="connections_per_source"}');
      assert.ok(perSource >= 350, `connections_per_source rejections: ${perSource} (500 opened, at most 100 kept)`);
      const timeouts = await metric('podidentity_agent_rejections_total', '{reason="request_timeout"}');
      assert.ok(timeouts >= 1, `request_timeout rejections: ${timeouts}`);
    } finally {
      slow.stop();
    }
  });

  /** A Running pod of this node at `ip` (the flood's sources must be this node's pods to count against its caps). */
  async function podAt(name: string, ip: string): Promise<void> {
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'example.invalid/app:1' }] } } });
    await core.patchNamespacedPodStatus({ namespace: ns, name, body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }

  test('slowloris from other nodes: addresses that are no pod of this node share one small pool, and never take the slots of this node\'s pods', async () => {
    const slow = new SlowClients(port);
    try {
      // Pods elsewhere in the cluster reach the listener on the node's address directly. 12 × 100: each at its
      // per-source cap, together past the total cap.
      await Promise.all(Array.from({ length: 12 }, (_, i) => slow.open(`127.0.7.${i + 1}`, 100)));
      // Well before the 5 s header deadline, which would close them all anyway.
      const during = await legitRequest();
      assert.equal(during.status, 400, during.body);
      assert.match(during.body, /selects pod legit/, 'this node\'s pod is served during the flood');
      // The rejection count is the proof: only the strangers' cap counts there, while the 5 s header deadline,
      // which a slow machine may reach first, closes connections without counting them. 1,200 opened into a
      // pool of 100: 1,100 refused at accept (fewer only if a deadline freed slots while they were opening).
      await waitFor('strangers held to their pool', async () => (await metric('podidentity_agent_rejections_total', '{reason="connections_strangers"}')) >= 1000, { timeoutMs: 15_000, intervalMs: 50 });
      await waitFor('the refused strangers see their connections closed', () => slow.open_ <= 100, { timeoutMs: 15_000, intervalMs: 50 });
    } finally {
      slow.stop();
    }
    await waitFor('stranger connections closed', async () => (await metric('podidentity_agent_open_connections')) === 0, { timeoutMs: 15_000, intervalMs: 100 });
  });

  test('slow connections from many pods: the total cap holds, memory stays far inside the container limit, service resumes', async (t) => {
    const slow = new SlowClients(port);
    const baseline = rssBytes(agent.pid);
    let peakRss = baseline;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(agent.pid))), 100);
    try {
      // 40 pods × 80 connections: each under its per-source cap, together well past the total cap (1000).
      await Promise.all(Array.from({ length: 40 }, (_, i) => podAt(`flood-${i + 1}`, `127.0.5.${i + 1}`)));
      await waitFor('the flooding pods in the agent\'s cache', async () => (await legitRequest('127.0.5.40')).body.includes('selects pod flood-40'), { timeoutMs: 10_000 });
      await Promise.all(Array.from({ length: 40 }, (_, i) => slow.open(`127.0.5.${i + 1}`, 80)));
      await waitFor('the total cap enforced', async () => (await metric('podidentity_agent_open_connections')) <= 1000 && slow.closed >= 2200, { timeoutMs: 10_000 });
      assert.ok(slow.open_ <= 1000, `${slow.open_} slow connections open`);
      assert.ok((await metric('podidentity_agent_rejections_total', '{reason="connections_total"}')) >= 1);
      await waitFor('slow connections closed at the header deadline', () => {
        if (slow.open_ > 0) throw new Error(`${slow.open_} still open`);
        return true;
      }, { timeoutMs: 15_000, intervalMs: 100 });
      const after = await legitRequest();
      assert.equal(after.status, 400, after.body);
      assert.match(after.body, /selects pod legit/);
      const mib = (b: number) => Math.round(b / 2 ** 20);
      t.diagnostic(`agent RSS ${mib(baseline)} MiB before the flood, ${mib(peakRss)} MiB at its peak`);
      // Run under tsx here (the loader itself costs tens of MiB), so the growth is the figure that matters.
      assert.ok(peakRss < MEMORY_LIMIT_BYTES && peakRss - baseline < 96 * 2 ** 20, `agent RSS ${mib(baseline)} MiB before, ${mib(peakRss)} MiB at peak under the flood (limit ${mib(MEMORY_LIMIT_BYTES)} MiB)`);
    } finally {
      clearInterval(sampler);
      slow.stop();
    }
  });
});
