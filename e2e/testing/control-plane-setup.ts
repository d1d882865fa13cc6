import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../../dev/local-cluster/controlplane/controlplane.js';
import { installCrds } from '../../dev/local-cluster/controlplane/crds.js';
import { ENV } from './cluster.js';

/** node --test --test-global-setup: one real API server for the whole e2e run, shared through env. */
let cp: ControlPlane | undefined;

export async function globalSetup(): Promise<void> {
  const started = Date.now();
  cp = await startControlPlane();
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  await installCrds(kc);
  process.env[ENV.kubeconfig] = cp.kubeconfigPath;
  process.env[ENV.server] = cp.server;
  process.env[ENV.token] = cp.token;
  process.env[ENV.ca] = cp.caPath;
  process.env[ENV.issuer] = cp.issuer;
  process.stderr.write(`[e2e] control plane ready at ${cp.server} in ${Date.now() - started} ms (etcd pid ${cp.pids.etcd}, kube-apiserver pid ${cp.pids.kubeApiserver})\n`);
}

export async function globalTeardown(): Promise<void> {
  await cp?.stop();
}
