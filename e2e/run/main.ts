import { execFileSync } from 'node:child_process';
import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane } from '../controlplane/controlplane.js';
import { installCrds } from '../controlplane/crds.js';

/**
 * `make run`: the whole product on embedded local defaults.
 * Today: the control plane, the CRDs and the samples. Later stages add the Azure emulator, the operator and
 * one agent per simulated node.
 */
const step = (msg: string) => process.stderr.write(`==> ${msg}\n`);

if (process.env['KUBECONFIG']) {
  step(`KUBECONFIG is set (${process.env['KUBECONFIG']}): installing the CRDs into that cluster`);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  await installCrds(kc);
  step('CRDs installed. The operator and agent are started by the later stages of make run.');
  process.exit(0);
}

step('starting the local control plane (etcd + kube-apiserver)');
const cp = await startControlPlane();
let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  step(`${signal}: stopping everything`);
  await cp.stop();
  step('stopped');
  process.exit(0);
};
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
step('installing CRDs');
await installCrds(kc);
const kubectl = (...args: string[]) => execFileSync('kubectl', ['--kubeconfig', cp.kubeconfigPath, ...args], { encoding: 'utf8' });
step('applying config/samples');
kubectl('create', 'namespace', 'demo');
kubectl('apply', '-f', 'config/samples/');
process.stdout.write(`\n${kubectl('get', 'pid', '-A')}\n`);
process.stdout.write(`Try it:\n  KUBECONFIG=${cp.kubeconfigPath} kubectl get pid -A\n\nReady. Press Ctrl-C to stop.\n`);
