import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import { testCluster, type TestCluster } from '../testing/cluster.js';
import { ARM_SCOPE, claimsOf, federatedApp, rawRequest, startFixture, type Fixture } from '../../dev/azure-emulator/test-fixture.js';

/**
 * Workload identity federation end to end against the real local control plane: the assertion is a
 * projected service-account token from TokenRequest, and the emulator verifies it with the keys it fetches
 * from the kube-apiserver's own OIDC discovery, as Azure AD does with an AKS issuer.
 */
describe('federated exchange of a real projected service-account token', () => {
  let fx: Fixture;
  let cluster: TestCluster;
  let namespace: string;
  let identity: { id: string; clientId: string; principalId: string };

  before(async () => {
    [fx, cluster] = await Promise.all([startFixture(), testCluster()]);
    namespace = await cluster.namespace('wif');
    const core = cluster.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'app' } } });
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'other' } } });
    fx.emu.seed.trustIssuer({ issuer: cluster.issuer, fetchOptions: { ca: cluster.caPem } });
    identity = fx.emu.seed.identity({ resourceGroup: 'rg-wif', name: 'wif-app' });
    const armToken = (await fx.credential.getToken(ARM_SCOPE)).token;
    const put = await rawRequest(`${fx.emu.armEndpoint}${identity.id}/federatedIdentityCredentials/app?api-version=2024-11-30`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${armToken}` },
      body: JSON.stringify({ properties: { issuer: cluster.issuer, subject: `system:serviceaccount:${namespace}:app`, audiences: [TOKEN_EXCHANGE_AUDIENCE] } }),
    });
    assert.equal(put.status, 201, put.text);
  });
  after(async () => {
    await fx?.emu.stop();
  });

  async function projectedToken(serviceAccount: string, audience = TOKEN_EXCHANGE_AUDIENCE): Promise<string> {
    const core = cluster.kc.makeApiClient(CoreV1Api);
    const res = await core.createNamespacedServiceAccountToken({
      namespace,
      name: serviceAccount,
      body: { spec: { audiences: [audience], expirationSeconds: 600 } },
    });
    const token = res.status?.token;
    assert.ok(token, 'TokenRequest returned a token');
    return token;
  }

  const exchange = (assertion: string) =>
    federatedApp(fx.emu, identity.clientId, assertion).acquireTokenByClientCredential({ scopes: [ARM_SCOPE], skipCache: true });

  it('msal-node exchanges the pod service account token for the identity token', async () => {
    const assertion = await projectedToken('app');
    assert.equal(claimsOf(assertion)['iss'], cluster.issuer);
    const result = await exchange(assertion);
    assert.ok(result?.accessToken);
    const claims = claimsOf(result.accessToken);
    assert.equal(claims['oid'], identity.principalId);
    assert.equal(claims['appid'], identity.clientId);
    assert.equal(claims['xms_mirid'], identity.id);
  });

  it('refuses another service account of the same cluster (subject mismatch)', async () => {
    await assert.rejects(exchange(await projectedToken('other')), (err: { errorCode?: string; errorMessage?: string }) => {
      assert.equal(err.errorCode, 'invalid_client');
      assert.match(err.errorMessage ?? '', /AADSTS70021/);
      return true;
    });
  });

  it('refuses a token for another audience', async () => {
    await assert.rejects(exchange(await projectedToken('app', 'https://kubernetes.default.svc')), (err: { errorCode?: string }) => {
      assert.equal(err.errorCode, 'invalid_client');
      return true;
    });
  });
});
