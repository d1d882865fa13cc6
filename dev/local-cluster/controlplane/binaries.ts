import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ControlPlaneBinaries {
  etcd: string;
  kubeApiserver: string;
}

const installScript = fileURLToPath(new URL('./install-binaries.sh', import.meta.url));

/**
 * Resolves etcd and kube-apiserver: $ETCD / $KUBE_APISERVER, PATH, the cache outside the repo, or a build
 * from Debian packages. The shell script owns that order so `make` and tests agree; it fails with a message
 * that says what to install.
 */
export function resolveBinaries(): ControlPlaneBinaries {
  const out = execFileSync('bash', [installScript], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const values = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const etcd = values['ETCD'];
  const kubeApiserver = values['KUBE_APISERVER'];
  if (!etcd || !kubeApiserver) throw new Error(`install-binaries.sh printed no binary paths:\n${out}`);
  return { etcd, kubeApiserver };
}
