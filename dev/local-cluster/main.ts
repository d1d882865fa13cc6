/**
 * `make run`: the whole product on embedded local defaults, or the operator against $KUBECONFIG.
 * Prints how to poke at it, then runs until Ctrl-C and tears everything down.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startStack, type PodHandle, type Stack } from './stack.js';
import { graphUrl, startStackPrometheus, type RunningPrometheus } from './prometheus.js';
import { netnsAvailable } from './netns/netns.js';
import { runAgainstCluster } from './external.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const started = Date.now();
const step = (msg: string) => process.stderr.write(`==> [${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
/** How long `make run`'s Azure AD takes to accept a new federated credential. */
const RUN_FIC_PROPAGATION_DELAY_MS = 3_000;

if (process.env['KUBECONFIG']) {
  await runAgainstCluster(step);
} else {
  await runLocal();
}

async function runLocal(): Promise<void> {
  const netns = await netnsAvailable();
  if (!netns) {
    step('make run needs root (and iproute2): the operator and agents run as a kubelet runs them, in network and mount namespaces');
    process.exit(1);
  }
  // Azure AD's real pace: a new federated credential is refused for a few seconds (the agent answers 503 +
  // Retry-After meanwhile and the PodIdentity says Propagating).
  const stack = await startStack({ netns, log: step, ficPropagationDelayMs: RUN_FIC_PROPAGATION_DELAY_MS });
  step('starting Prometheus (scrapes the operator and the agents, evaluates the alerts)');
  const prometheus: RunningPrometheus | undefined = await startStackPrometheus(stack).catch((err: unknown) => {
    step(`Prometheus not started: ${(err as Error).message}`);
    return undefined;
  });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    step(`${signal}: stopping processes, removing namespaces, rules and temp files`);
    await prometheus?.stop();
    await stack.stop();
    step('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const kubectl = async (...args: string[]) => (await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, ...args], { encoding: 'utf8' })).stdout;
  const demo = stack.pods[0]!;
  let token: DemoToken;
  try {
    step('waiting for every PodIdentity to be Ready');
    await kubectl('wait', '--for=condition=Ready', 'pid', '--all', '-A', '--timeout=120s');
    token = await demoToken(stack, demo);
  } catch (err) {
    // A failed start must not leave namespaces, rules or processes behind.
    step(`start failed: ${(err as Error).message}`);
    await prometheus?.stop();
    await stack.stop();
    process.exit(1);
  }
  const out = process.stdout;
  out.write(`\n${await kubectl('get', 'pid', '-A')}\n`);
  out.write(`Kubernetes:\n  KUBECONFIG=${stack.kubeconfigPath} kubectl get pid -A\n\n`);
  out.write(`A token from inside the ${demo.namespace}/${demo.name} pod (the origin story):\n  ${curlCommand(demo)}\n`);
  out.write(`  decoded claims: ${JSON.stringify(token.claims, null, 2).replace(/\n/g, '\n  ')}\n\n`);
  if (token.resourceGroups) out.write(`With that token the pod listed resource groups through ARM: ${token.resourceGroups.join(', ')}\n\n`);
  out.write('Metrics:\n');
  out.write(`  operator  ${await stack.operatorMetricsUrl()}   (leader)\n`);
  for (const node of stack.nodes) out.write(`  agent     ${node.metricsUrl}   (${node.name})\n`);
  if (prometheus) {
    out.write(`  Prometheus ${prometheus.url}   (alerts: ${prometheus.url}/alerts)\n`);
    out.write(`  token latency p99 by cache hit/miss: ${graphUrl(prometheus.url, 'histogram_quantile(0.99, sum by (le, cache) (rate(podidentity_agent_token_request_duration_seconds_bucket[1m])))')}\n`);
  }
  out.write(`\nAzure emulator:\n  ARM and Azure AD  ${stack.emu.armEndpoint}   (from pods: ${stack.armEndpointForPods})\n`);
  out.write(`  trust its CA     REQUESTS_CA_BUNDLE=${stack.emu.caCertPath} NODE_EXTRA_CA_CERTS=${stack.emu.caCertPath}\n`);
  out.write(`\nReady in ${((Date.now() - started) / 1000).toFixed(1)} s. Press Ctrl-C to stop.\n`);
}

function curlCommand(pod: PodHandle): string {
  const url = `${pod.node.imdsBase}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/`;
  return `ip netns exec ${pod.netns} curl -s -H Metadata:true '${url}'`;
}

interface DemoToken {
  claims: Record<string, unknown>;
  resourceGroups?: string[];
}

/** Does what the origin-story program does: a token from IMDS, then a resource-group list from ARM. */
async function demoToken(stack: Stack, pod: PodHandle): Promise<DemoToken> {
  const inPod = (cmd: string, args: string[]) => run('ip', ['netns', 'exec', pod.netns, cmd, ...args], { encoding: 'utf8' });
  const url = `${pod.node.imdsBase}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/`;
  // Like any IMDS client, retry what the agent says to retry (503 + Retry-After while the credential
  // propagates). One attempt per curl: with --retry, curl writes every attempt's body to stdout.
  let last = '';
  const body = await waitFor('a token in the demo pod', async () => {
    const { stdout } = await inPod('curl', ['-s', '-m', '10', '-w', '\n%{http_code}', '-H', 'Metadata: true', url]);
    const lines = stdout.split('\n');
    const status = Number(lines.pop());
    last = lines.join('\n');
    if (status === 503 || status === 429) return undefined;
    const answer = JSON.parse(last) as { access_token?: string };
    if (!answer.access_token) throw new Error(`the demo pod got no token (HTTP ${status}): ${last}`);
    return answer as { access_token: string };
  }, { timeoutMs: 60_000, intervalMs: 1_000 }).catch((err: Error) => {
    throw new Error(`${err.message} (last answer: ${last})`);
  });
  const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  const list = `${stack.armEndpointForPods}/subscriptions/${stack.emu.subscriptionId}/resourcegroups?api-version=2021-04-01`;
  try {
    const arm = await inPod('curl', ['-s', '-m', '10', '--cacert', stack.emu.caCertPath, '-H', `Authorization: Bearer ${body.access_token}`, list]);
    const groups = (JSON.parse(arm.stdout) as { value?: { name: string }[] }).value?.map((g) => g.name);
    return groups ? { claims, resourceGroups: groups } : { claims };
  } catch {
    return { claims };
  }
}

export {};
