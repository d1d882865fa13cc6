/**
 * The Azure side of a simulated node for the agent e2e suites: the emulator listening on the root end of the
 * node link (so the node netns reaches it), trusting the control plane's service-account issuer, an ARM caller
 * with Owner, and the node's scale set.
 */
import assert from 'node:assert/strict';
import { ClientSecretCredential } from '@azure/identity';
import { startAzureEmulator, type AzureEmulator } from '../../dev/azure-emulator/emulator.js';
import { rawRequest } from '../../dev/azure-emulator/test-fixture.js';
import type { Topology } from '../../dev/local-cluster/netns/netns.js';
import type { TestCluster } from '../testing/cluster.js';

export interface NodeAzure {
  emu: AzureEmulator;
  /** An ARM call as an Owner service principal; asserts a 2xx answer. */
  arm(method: string, path: string, body: unknown): Promise<void>;
}

export async function startNodeAzure(cluster: TestCluster, topo: Topology, nodeName: string): Promise<NodeAzure> {
  const emu = await startAzureEmulator({ extraHosts: [topo.rootIp] });
  emu.trustInProcess();
  await trustClusterIssuer(emu, cluster);
  const secret = `s-${topo.id}`;
  const sp = emu.seed.servicePrincipal({ clientId: crypto.randomUUID(), clientSecret: secret, role: 'Owner' });
  const credential = new ClientSecretCredential(emu.tenantId, sp.clientId, secret, { authorityHost: emu.authorityHost, disableInstanceDiscovery: true });
  const armToken = (await credential.getToken('https://management.azure.com/.default')).token;
  const arm = async (method: string, path: string, body: unknown) => {
    const res = await rawRequest(`${emu.armEndpoint}${path}`, { method, headers: { authorization: `Bearer ${armToken}` }, body: JSON.stringify(body) });
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${res.text}`);
  };
  emu.seed.scaleSet({ resourceGroup: 'mc_rg', name: 'pool', instances: [{ nodeName, ip: topo.nodeIp }] });
  return { emu, arm };
}

/** Azure AD trusts the control plane's service-account issuer (as a cluster's OIDC issuer is registered). */
export async function trustClusterIssuer(emu: AzureEmulator, cluster: TestCluster): Promise<void> {
  // kube-apiserver 1.20 answers 406 to the emulator's `Accept: application/json` on /openid/v1/jwks, so the
  // test hands Azure AD the issuer's keys itself (fetched with the JWKS media type).
  const jwks = await rawRequest(`${cluster.server}/openid/v1/jwks`, { headers: { accept: 'application/jwk-set+json' }, ca: cluster.caPem });
  assert.equal(jwks.status, 200, jwks.text);
  emu.seed.trustIssuer({ issuer: cluster.issuer, jwks: jwks.json as { keys: [] } });
}
