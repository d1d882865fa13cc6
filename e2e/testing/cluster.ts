import { after } from 'node:test';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../../dev/local-cluster/controlplane/controlplane.js';
import { installCrds } from '../../dev/local-cluster/controlplane/crds.js';

/** What an e2e test needs to talk to the real local API server. */
export interface TestCluster {
  kc: KubeConfig;
  kubeconfigPath: string;
  server: string;
  token: string;
  caPem: string;
  issuer: string;
  /** Creates a fresh namespace, deleted when the test file ends. */
  namespace(prefix?: string, labels?: Record<string, string>): Promise<string>;
}

/**
 * The environment variables that `globalSetup` (e2e/testing/global-setup.mjs) exports to every e2e test
 * process, so the whole run shares one API server.
 */
export const ENV = {
  kubeconfig: 'PODID_TEST_KUBECONFIG',
  server: 'PODID_TEST_SERVER',
  token: 'PODID_TEST_TOKEN',
  ca: 'PODID_TEST_CA',
  issuer: 'PODID_TEST_ISSUER',
} as const;

let shared: Promise<TestCluster & { cleanup(): Promise<void> }> | undefined;

// Registered at import time, on the file's root test: a hook registered later from inside a `before` would
// belong to that hook and run as soon as it finished, stopping the server before the tests reach it.
after(async () => {
  const cluster = await shared?.catch(() => undefined);
  await cluster?.cleanup();
});

/**
 * A ready API server with the CRDs installed. Reuses the run-wide server when the global setup started one;
 * otherwise (a single file run by hand) starts one for this process and stops it when the file ends.
 */
export function testCluster(): Promise<TestCluster> {
  shared ??= connect();
  return shared;
}

async function connect(): Promise<TestCluster & { cleanup(): Promise<void> }> {
  const fromEnv = process.env[ENV.kubeconfig];
  let own: ControlPlane | undefined;
  let info: { kubeconfigPath: string; server: string; token: string; caPem: string; issuer: string };
  if (fromEnv) {
    info = {
      kubeconfigPath: fromEnv,
      server: process.env[ENV.server] ?? '',
      token: process.env[ENV.token] ?? '',
      caPem: readFileSync(process.env[ENV.ca] ?? '', 'utf8'),
      issuer: process.env[ENV.issuer] ?? '',
    };
  } else {
    own = await startControlPlane();
    info = own;
  }
  const kc = new KubeConfig();
  kc.loadFromFile(info.kubeconfigPath);
  if (own) await installCrds(kc);
  const core = kc.makeApiClient(CoreV1Api);
  const created: string[] = [];
  return {
    kc,
    ...info,
    async cleanup() {
      await Promise.allSettled(created.map((name) => core.deleteNamespace({ name })));
      await own?.stop();
    },
    async namespace(prefix = 'test', labels = {}) {
      const name = `${prefix}-${randomBytes(3).toString('hex')}`.toLowerCase();
      await core.createNamespace({ body: { metadata: { name, labels } } });
      created.push(name);
      return name;
    },
  };
}
