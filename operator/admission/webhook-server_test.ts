import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { createLogger } from '../../lib/log.js';
import { selfSignedServingCertificate } from './self-signed.js';
import { TokenRequestPolicy } from './token-request-policy.js';
import { startWebhookServer, WEBHOOK_PATH } from './webhook-server.js';

function post(port: number, ca: string, body: string, method = 'POST', path = WEBHOOK_PATH): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, ca, servername: 'localhost', headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the webhook answers an AdmissionReview with its uid and decision, and refuses anything that is not one', async () => {
  const cert = selfSignedServingCertificate('t', ['localhost'], 1);
  const seen: string[] = [];
  const policy = new TokenRequestPolicy({ namespace: 'podidentity-system', serviceAccount: 'podidentity-agent' }, { get: async () => undefined }, { inNamespace: async () => [] });
  const server = await startWebhookServer({ port: 0, host: '127.0.0.1', certPem: cert.certPem, keyPem: cert.keyPem, policy, logger: createLogger('test', 'error'), onDecision: (o) => seen.push(o) });
  try {
    const review = (username: string) => JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'abc', operation: 'CREATE', userInfo: { username }, object: {} } });
    const other = await post(server.port, cert.certPem, review('system:node:n1'));
    assert.equal(other.status, 200);
    assert.deepEqual(JSON.parse(other.body), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'abc', allowed: true } });
    const agent = JSON.parse((await post(server.port, cert.certPem, review('system:serviceaccount:podidentity-system:podidentity-agent'))).body);
    assert.equal(agent.response.uid, 'abc');
    assert.equal(agent.response.allowed, false);
    assert.equal(agent.response.status.code, 403);
    assert.equal((await post(server.port, cert.certPem, '{"kind":"AdmissionReview"}')).status, 400);
    assert.equal((await post(server.port, cert.certPem, 'not json')).status, 400);
    assert.equal((await post(server.port, cert.certPem, '', 'GET')).status, 405);
    assert.equal((await post(server.port, cert.certPem, '{}', 'POST', '/other')).status, 404);
    assert.deepEqual(seen, ['allowed', 'denied', 'bad_request', 'bad_request']);
  } finally {
    await server.close();
  }
});
