/**
 * The operator and the agents run under their shipped ServiceAccounts and roles (never the control plane's
 * admin token), so a verb missing from a ClusterRole breaks them, and these tests show that it does: each
 * takes one verb out of the rendered RBAC and sees the workload fail.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { K8sObject } from '../../dev/local-cluster/kubelet/render.js';
import { netnsAvailable } from '../../dev/local-cluster/netns/netns.js';
import { startStack } from '../../dev/local-cluster/stack.js';
import { waitFor } from '../../dev/support/wait.js';

const run = promisify(execFile);
const skip = !(await netnsAvailable()) && 'needs root and iproute2 (ip netns)';
const TOKEN_URL = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
}

/** Takes `verb` on `resource` out of a rendered role; fails if the role never granted it. */
function withoutVerb(kind: string, name: string, resource: string, verb: string): (objects: K8sObject[]) => void {
  return (objects) => {
    const role = objects.find((o) => o.kind === kind && o.metadata.name === name);
    assert.ok(role, `${kind}/${name} is rendered`);
    const rules = role['rules'] as Rule[];
    const rule = rules.find((r) => r.resources?.includes(resource) && r.verbs.includes(verb));
    assert.ok(rule, `${kind}/${name} grants ${verb} on ${resource}`);
    const others = rule.resources!.filter((r) => r !== resource);
    // Only this resource loses the verb; the rule's other resources keep it.
    const verbs = rule.verbs.filter((v) => v !== verb);
    rules.splice(rules.indexOf(rule), 1, ...(verbs.length > 0 ? [{ ...rule, resources: [resource], verbs }] : []), ...(others.length > 0 ? [{ ...rule, resources: others }] : []));
  };
}

describe('the shipped RBAC, one verb short', { skip, timeout: 600_000 }, () => {
  test('the operator without list on pods never becomes ready, and its log says forbidden', async () => {
    await assert.rejects(
      startStack({ netns: true, netnsPrefix: `podid-${randomBytes(2).toString('hex')}-`, readyTimeoutMs: 30_000, mutate: withoutVerb('ClusterRole', 'podidentity-operator', 'pods', 'list') }),
      (err: Error) => {
        assert.match(err.message, /podidentity-operator-.* ready/);
        assert.match(err.message, /forbidden/i);
        return true;
      },
    );
  });

  test('the agent without create on serviceaccounts/token issues no Federated token', async () => {
    // config/default as shipped (two operator replicas, leader election), not the dev overlay.
    const stack = await startStack({ netns: true, overlay: 'config/default', netnsPrefix: `podid-${randomBytes(2).toString('hex')}-`, mutate: withoutVerb('ClusterRole', 'podidentity-agent', 'serviceaccounts/token', 'create') });
    try {
      await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, 'wait', '--for=condition=Ready', 'pid', '--all', '-A', '--timeout=120s']);
      const pod = stack.pods.find((p) => p.name === 'rgapi')!;
      const { stdout } = await run('ip', ['netns', 'exec', pod.netns, 'curl', '-s', '-m', '10', '-w', '\n%{http_code}', '-H', 'Metadata: true', TOKEN_URL], { encoding: 'utf8' });
      const lines = stdout.split('\n');
      const status = Number(lines.pop());
      // A refusal stays a refusal at the agent (agent/issuance/token-request.ts): 403, RBAC's reason in it.
      assert.equal(status, 403, `no token without the verb: ${stdout}`);
      const body = JSON.parse(lines.join('\n')) as { error?: string; error_description?: string; access_token?: string };
      assert.equal(body.error, 'token_request_forbidden');
      assert.equal(body.access_token, undefined);
      assert.match(body.error_description ?? '', /cannot create resource "serviceaccounts\/token"/);
      await waitFor('the agent to log the refused TokenRequest', () => /forbidden/i.test(pod.node.agent.container().output()), { timeoutMs: 10_000 });
    } finally {
      await stack.stop();
    }
  });
});
