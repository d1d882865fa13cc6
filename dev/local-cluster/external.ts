import { spawn } from 'node:child_process';
import { KubeConfig } from '@kubernetes/client-node';
import { installCrds } from './controlplane/crds.js';
import { REPO } from './stack.js';
import { stageImage } from './kubelet/program.js';
import { composeCommand, toHost } from './kubelet/command.js';

/**
 * kubebuilder-style `make run` against a real cluster: install the CRDs, then run the operator in the
 * foreground with the Azure settings from the environment. The agent is a DaemonSet and needs the nodes'
 * network, so it is deployed with `kubectl apply -k config/default`, not run locally.
 */
export async function runAgainstCluster(step: (msg: string) => void): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  step(`KUBECONFIG is set: using cluster ${kc.getCurrentCluster()?.server ?? '(unknown)'}`);
  step('installing the CRDs');
  await installCrds(kc);
  step(
    'starting the operator locally. It needs (flags in operator/README.md): AZURE_SUBSCRIPTION_ID, ' +
      'POD_IDENTITY_RESOURCE_GROUP, POD_IDENTITY_LOCATION, and POD_IDENTITY_AKS_CLUSTER_ID or POD_IDENTITY_OIDC_ISSUER; ' +
      'credentials come from DefaultAzureCredential (az login, or AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET)',
  );
  // The operator image's files (compiled dist/, production modules) and its command line with our flags as
  // the container's args, as the Deployment runs it; the kubeconfig and Azure settings come from this shell.
  const image = await stageImage(REPO, 'Dockerfile.operator');
  const [program, ...args] = toHost(composeCommand({ args: process.argv.slice(2) }, image.config), { node: process.execPath, directories: image.directories });
  const child = spawn(program!, args, { stdio: 'inherit', cwd: image.root, env: { ...process.env, NODE_ENV: image.config.env['NODE_ENV'] } });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  process.exit(code);
}
