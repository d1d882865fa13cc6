import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenRequestPolicy, type AdmissionRequest, type IdentityLookup, type PodFacts, type PodLookup } from './token-request-policy.js';

const AGENT = { namespace: 'podidentity-system', serviceAccount: 'podidentity-agent' };
const AGENT_USER = 'system:serviceaccount:podidentity-system:podidentity-agent';

function pods(entries: Record<string, PodFacts>, fail = false): PodLookup {
  return {
    async get(namespace, name) {
      if (fail) throw new Error('connection refused');
      return entries[`${namespace}/${name}`];
    },
  };
}

const cluster = pods({
  'podidentity-system/agent-a': { uid: 'agent-uid', nodeName: 'node-a', serviceAccountName: 'podidentity-agent' },
  'podidentity-system/agent-gone': { uid: 'agent-gone-uid', nodeName: 'node-a', serviceAccountName: 'podidentity-agent', phase: 'Failed' },
  'team/web': { uid: 'web-uid', nodeName: 'node-a', serviceAccountName: 'web', labels: { 'podidentity.dev/identity': 'web' } },
  'team/vm': { uid: 'vm-uid', nodeName: 'node-a', serviceAccountName: 'web', labels: { app: 'vm' } },
  'team/vm2': { uid: 'vm2-uid', nodeName: 'node-a', serviceAccountName: 'web', labels: { app: 'vm2' } },
  'team/unselected': { uid: 'unselected-uid', nodeName: 'node-a', serviceAccountName: 'web', labels: { app: 'batch' } },
  'team/far': { uid: 'far-uid', nodeName: 'node-b', serviceAccountName: 'web' },
  'team/pending': { uid: 'pending-uid', nodeName: '', serviceAccountName: 'web' },
  'podidentity-system/operator-a': { uid: 'operator-uid', nodeName: 'node-a', serviceAccountName: 'podidentity-operator' },
  'kube-system/proxy-a': { uid: 'proxy-uid', nodeName: 'node-a', serviceAccountName: 'kube-proxy', hostNetwork: true },
  'team/done': { uid: 'done-uid', nodeName: 'node-a', serviceAccountName: 'web', phase: 'Succeeded' },
  'team/crashed': { uid: 'crashed-uid', nodeName: 'node-a', serviceAccountName: 'web', phase: 'Failed' },
});

/** team/web's PodIdentity (default selector), and one being deleted that would select team/unselected. */
const identities: IdentityLookup = {
  async inNamespace(namespace) {
    if (namespace !== 'team') return [];
    return [
      { metadata: { name: 'web' }, spec: {} },
      { metadata: { name: 'batch', deletionTimestamp: '2026-01-01T00:00:00Z' }, spec: { selector: { matchLabels: { app: 'batch' } } } },
      { metadata: { name: 'node-mode' }, spec: { mode: 'Node', selector: { matchLabels: { app: 'vm' } } } },
      { metadata: { name: 'node-mode-by-status' }, spec: { selector: { matchLabels: { app: 'vm2' } } }, status: { mode: 'Node' } },
    ];
  },
};

function policy(lookup: PodLookup = cluster, ids: IdentityLookup = identities): TokenRequestPolicy {
  return new TokenRequestPolicy(AGENT, lookup, ids);
}

function request(overrides: { spec?: Record<string, unknown>; name?: string; namespace?: string; user?: string; extra?: Record<string, string[]> } = {}): AdmissionRequest {
  return {
    uid: 'r1',
    kind: { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest' },
    resource: { group: '', version: 'v1', resource: 'serviceaccounts' },
    subResource: 'token',
    operation: 'CREATE',
    name: overrides.name ?? 'web',
    namespace: overrides.namespace ?? 'team',
    userInfo: {
      username: overrides.user ?? AGENT_USER,
      extra: overrides.extra ?? { 'authentication.kubernetes.io/pod-name': ['agent-a'], 'authentication.kubernetes.io/pod-uid': ['agent-uid'] },
    },
    object: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: overrides.spec ?? { audiences: ['api://AzureADTokenExchange'], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'web-uid' } },
    },
  };
}

const legit = { audiences: ['api://AzureADTokenExchange'], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'web-uid' } };

async function refused(req: AdmissionRequest, lookup: PodLookup = cluster): Promise<string> {
  const d = await policy(lookup).decide(req);
  assert.equal(d.allowed, false, 'refused');
  return d.allowed ? '' : d.message;
}

test('the agent may mint the one token Federated issuance needs', async () => {
  assert.deepEqual(await policy().decide(request()), { allowed: true });
});

test('on 1.30+ the node comes from the credential itself, without reading the agent pod', async () => {
  const d = await policy().decide(request({ extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } }));
  assert.deepEqual(d, { allowed: true });
});

test('other users are not constrained (the kubelet keeps minting projected tokens)', async () => {
  const d = await policy(pods({}, true)).decide(request({ user: 'system:node:node-a', spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3607 } }));
  assert.deepEqual(d, { allowed: true });
});

test('agent token with another audience is refused', async () => {
  assert.match(await refused(request({ spec: { ...legit, audiences: ['https://kubernetes.default.svc'] } })), /spec\.audiences/);
  assert.match(await refused(request({ spec: { ...legit, audiences: ['api://AzureADTokenExchange', 'https://kubernetes.default.svc'] } })), /spec\.audiences/);
  assert.match(await refused(request({ spec: { ...legit, audiences: [] } })), /spec\.audiences/);
});

test('agent token without a pod binding is refused', async () => {
  const { boundObjectRef: _dropped, ...unbound } = legit;
  assert.match(await refused(request({ spec: unbound })), /boundObjectRef must bind/);
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Secret', name: 'web', uid: 'x' } } })), /v1 Pod/);
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web' } } })), /uid is required/);
});

test('agent token bound to a pod on another node is refused', async () => {
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'far', uid: 'far-uid' } } })), /node-b", not on the agent's node node-a/);
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'pending', uid: 'pending-uid' } } })), /not on the agent's node/);
});

test('agent token for a service account other than the bound pod’s is refused', async () => {
  assert.match(await refused(request({ name: 'default' })), /runs as service account web, not default/);
});

test('agent token for a kube-system service account is refused', async () => {
  assert.match(await refused(request({ namespace: 'kube-system', name: 'replicaset-controller', spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'web-uid' } } })), /no pod kube-system\/web with uid web-uid/);
});

test('agent token with a long lifetime is refused', async () => {
  assert.match(await refused(request({ spec: { ...legit, expirationSeconds: 3600 } })), /at most 600, got 3600/);
  assert.match(await refused(request({ spec: { ...legit, expirationSeconds: 3607 } })), /at most 600/);
});

test('agent token bound to a finished pod on its node (Succeeded/Failed: it runs no more) is refused', async () => {
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'done', uid: 'done-uid' } } })), /team\/done has finished \(phase Succeeded\)/);
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'crashed', uid: 'crashed-uid' } } })), /phase Failed/);
  // The credential of an agent pod that has finished (kept on disk by the node, still valid while the pod
  // object exists) mints nothing either.
  const gone = { 'authentication.kubernetes.io/pod-name': ['agent-gone'], 'authentication.kubernetes.io/pod-uid': ['agent-gone-uid'] };
  assert.match(await refused(request({ extra: gone })), /agent's pod podidentity-system\/agent-gone has finished/);
});

test('agent token bound to a hostNetwork pod on its node (a kube-system DaemonSet: never a pod identity) is refused', async () => {
  const spec = { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'proxy-a', uid: 'proxy-uid' } };
  assert.match(await refused(request({ namespace: 'kube-system', name: 'kube-proxy', spec })), /kube-system\/proxy-a uses the host network/);
});

test('agent token for the operator’s service account (an operator replica on its node; workload identity with role-assignment rights) is refused', async () => {
  const spec = { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'operator-a', uid: 'operator-uid' } };
  assert.match(await refused(request({ namespace: 'podidentity-system', name: 'podidentity-operator', spec })), /service accounts of its own namespace podidentity-system/);
});

test('agent token bound to a pod on its node that no PodIdentity selects (a workload identity federated outside this operator) is refused', async () => {
  const spec = { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'unselected', uid: 'unselected-uid' } };
  assert.match(await refused(request({ spec })), /no PodIdentity in namespace team selects pod unselected in Federated mode/);
});

test('agent token bound to a pod whose only PodIdentities are Node mode (issued from the node’s IMDS, never a TokenRequest) is refused', async () => {
  for (const name of ['vm', 'vm2']) {
    const spec = { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid: `${name}-uid` } };
    assert.match(await refused(request({ spec })), new RegExp(`no PodIdentity in namespace team selects pod ${name} in Federated mode`));
  }
});

test('when PodIdentities can’t be read the agent is refused with 503', async () => {
  const d = await policy(cluster, { inNamespace: async () => { throw new Error('timeout'); } }).decide(request());
  assert.equal(!d.allowed && d.code, 503);
});

test('an unauthenticated caller posting reviews to the webhook learns no pod’s uid, nor whether a pod exists without knowing its uid', async () => {
  // The webhook's port answers anyone, and a forged review can carry any userInfo (the node-name extra skips
  // the agent-pod read): its answers must not be an oracle for pods the caller can't read.
  const forged = { 'authentication.kubernetes.io/node-name': ['node-a'] };
  const missing = await refused(request({ extra: forged, spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'ghost', uid: 'guess' } } }));
  const existing = await refused(request({ extra: forged, spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'guess' } } }));
  assert.doesNotMatch(existing, /web-uid/);
  assert.equal(existing.replace('web', 'ghost'), missing, 'the same answer whether or not the pod exists');
});

test('agent token bound to a recreated pod (stale uid) is refused', async () => {
  assert.match(await refused(request({ spec: { ...legit, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'old-uid' } } })), /no pod team\/web with uid old-uid/);
});

test('an agent credential that is not bound to a pod can mint nothing (its node is unknown)', async () => {
  assert.match(await refused(request({ extra: {} })), /not bound to a pod/);
  assert.match(await refused(request({ extra: { 'authentication.kubernetes.io/pod-name': ['agent-a'], 'authentication.kubernetes.io/pod-uid': ['stale'] } })), /no longer exists/);
  assert.match(await refused(request({ extra: { 'authentication.kubernetes.io/pod-name': ['web'], 'authentication.kubernetes.io/pod-uid': ['web-uid'] } })), /does not exist|no longer exists/);
});

test('when pods can’t be read the agent is refused with 503 (fail closed, retryable)', async () => {
  const d = await policy(pods({}, true)).decide(request());
  assert.equal(d.allowed, false);
  assert.equal(!d.allowed && d.code, 503);
});

test('anything else the agent sends through this webhook is refused', async () => {
  const req = { ...request(), operation: 'UPDATE' };
  assert.match(await refused(req), /only TokenRequests/);
});

test('the agent pod is read once per uid (its node never changes); the bound pod is read on every request', async () => {
  const reads: string[] = [];
  const counting: PodLookup = { get: async (ns, name) => (reads.push(`${ns}/${name}`), cluster.get(ns, name)) };
  const counted = policy(counting);
  assert.deepEqual(await counted.decide(request()), { allowed: true });
  assert.deepEqual(await counted.decide(request()), { allowed: true });
  assert.deepEqual(reads, ['podidentity-system/agent-a', 'team/web', 'team/web']);
});
