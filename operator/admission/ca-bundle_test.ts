import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
import { agentMatchConditions, CN_PREFIX, ownerOf, publishCaBundle, splitPem, type CaBundleStore } from './ca-bundle.js';
import { selfSignedServingCertificate } from './self-signed.js';

function store(initial: string[], conflicts = 0): CaBundleStore & { writes: number; bundle(): string[] } {
  let obj: V1ValidatingWebhookConfiguration = {
    metadata: { name: 'cfg', resourceVersion: '1' },
    webhooks: [{ name: 'a.podidentity.dev', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { caBundle: initial.length ? Buffer.from(initial.join('')).toString('base64') : undefined } }],
  };
  let left = conflicts;
  const s = {
    writes: 0,
    read: async () => structuredClone(obj),
    replace: async (next: V1ValidatingWebhookConfiguration) => {
      if (left-- > 0) throw Object.assign(new Error('conflict'), { code: 409 });
      s.writes++;
      obj = structuredClone(next);
    },
    bundle: () => splitPem(Buffer.from(obj.webhooks![0]!.clientConfig.caBundle ?? '', 'base64').toString()),
  };
  return s;
}

const cert = (pod: string, days = 30, now?: Date) => selfSignedServingCertificate(`${CN_PREFIX}${pod}`, ['svc'], days, now).certPem;

test("a replica adds its certificate, keeps live replicas' and foreign ones, and drops gone or expired ones", async () => {
  const mine = cert('op-1');
  const live = cert('op-2');
  const gone = cert('op-0');
  const expired = cert('op-2', 1, new Date(Date.now() - 3 * 86400_000));
  const foreign = selfSignedServingCertificate('cert-manager', ['svc'], 30).certPem;
  const s = store([gone, live, expired, foreign]);
  assert.equal(ownerOf(mine), 'op-1');
  assert.equal(ownerOf(foreign), undefined);
  const result = await publishCaBundle({ store: s, certPem: mine, podName: 'op-1', podExists: async (n) => n === 'op-2' });
  assert.deepEqual(result, { changed: true });
  assert.deepEqual(s.bundle(), [mine, live, foreign]);
  assert.deepEqual(await publishCaBundle({ store: s, certPem: mine, podName: 'op-1', podExists: async (n) => n === 'op-2' }), { changed: false });
  assert.equal(s.writes, 1, 'a converged bundle costs no write');
});

test('a write that conflicts (another replica wrote first) re-reads the object and tries again', async () => {
  const s = store([], 2);
  await publishCaBundle({ store: s, certPem: cert('op-1'), podName: 'op-1', podExists: async () => true });
  assert.equal(s.bundle().length, 1);
});

test('installed in another namespace, the shipped matchConditions (naming podidentity-system) would skip the agent: the operator rewrites them to its agent', async () => {
  // kustomize's namespace transformer renames the ServiceAccount but not the username inside the CEL string;
  // on 1.28+ the API server would then never call the webhook for the real agent (fail open).
  const s = store([]);
  const shipped = [{ name: 'only-the-pod-identity-agent', expression: "request.userInfo.username == 'system:serviceaccount:podidentity-system:podidentity-agent'" }];
  const obj = await s.read();
  obj.webhooks![0]!.matchConditions = shipped;
  await s.replace(obj);
  const username = 'system:serviceaccount:ops:podidentity-agent';
  await publishCaBundle({ store: s, certPem: cert('op-1'), podName: 'op-1', podExists: async () => true, agentUsername: username });
  const written = (await s.read()).webhooks![0]!.matchConditions;
  assert.deepEqual(written, agentMatchConditions(username));
  assert.equal(written?.length, 1, 'no other condition can narrow it');
  assert.match(written![0]!.expression, /== 'system:serviceaccount:ops:podidentity-agent'$/);
});

test('without matchConditions (clusters before 1.28: every TokenRequest reaches the webhook) none are added', async () => {
  const s = store([]);
  await publishCaBundle({ store: s, certPem: cert('op-1'), podName: 'op-1', podExists: async () => true, agentUsername: 'system:serviceaccount:ops:podidentity-agent' });
  assert.equal((await s.read()).webhooks![0]!.matchConditions, undefined);
});
