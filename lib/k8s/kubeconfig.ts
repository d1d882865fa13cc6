import { existsSync } from 'node:fs';
import { http } from '../node-http.js';
import https from 'node:https';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ApiServer } from './api-server.js';
import { inClusterApiServer, inClusterAvailable } from './in-cluster.js';

/*
 * How both programs find the API server, in one place. client-node is imported here only, and only with
 * `import()` when a kubeconfig file is used: loading it costs a process about 84 MB of RSS, which the agent
 * (in-cluster, on every node) does not pay.
 */

/** Where the configuration comes from. `path` absent: client-node's `KUBECONFIG` handling (lists merge). */
export type KubeConfigSource = { kind: 'in-cluster' } | { kind: 'kubeconfig'; path?: string };

/**
 * controller-runtime's order: an explicit path (`--kubeconfig`), then `KUBECONFIG`, then in-cluster, then
 * `~/.kube/config`. In a pod, in-cluster wins over a stray `~/.kube/config` (client-node's own
 * `loadFromDefault` would prefer the file).
 */
export function kubeConfigSource(explicitPath?: string, env: NodeJS.ProcessEnv = process.env, inCluster: () => boolean = () => inClusterAvailable(env)): KubeConfigSource {
  if (explicitPath) return { kind: 'kubeconfig', path: explicitPath };
  if (env['KUBECONFIG']) return { kind: 'kubeconfig' };
  if (inCluster()) return { kind: 'in-cluster' };
  const home = env['HOME'];
  const homeConfig = home ? join(home, '.kube', 'config') : undefined;
  if (homeConfig && existsSync(homeConfig)) return { kind: 'kubeconfig', path: homeConfig };
  throw new Error('no Kubernetes API configuration: pass --kubeconfig, set KUBECONFIG, or run in a pod (KUBERNETES_SERVICE_HOST and a mounted service-account token)');
}

async function loadFrom(source: KubeConfigSource): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (source.kind === 'in-cluster') kc.loadFromCluster();
  else if (source.path) kc.loadFromFile(source.path);
  else kc.loadFromDefault();
  return kc;
}

/** A client-node KubeConfig, for programs that use its typed API clients (the operator). */
export async function loadKubeConfig(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): Promise<KubeConfig> {
  return loadFrom(kubeConfigSource(explicitPath, env));
}

/** The API server for raw requests; in-cluster without client-node, a kubeconfig file through it. */
export async function connectApiServer(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): Promise<{ api: ApiServer; source: KubeConfigSource }> {
  const source = kubeConfigSource(explicitPath, env);
  if (source.kind === 'in-cluster') return { api: inClusterApiServer({ env }), source };
  return { api: kubeConfigApiServer(await loadFrom(source)), source };
}

const adapted = new WeakMap<KubeConfig, ApiServer>();

/**
 * A client-node KubeConfig as an ApiServer: its credentials per request (token files, exec plugins and
 * auth providers refresh there), its TLS settings on one keep-alive agent (client-node's own agent for raw
 * requests does not keep connections alive). A kubeconfig with a proxy keeps client-node's proxy agent.
 */
export function kubeConfigApiServer(kc: KubeConfig): ApiServer {
  const known = adapted.get(kc);
  if (known) return known;
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  let pooled: https.Agent | undefined;
  const api: ApiServer = {
    server: cluster.server.replace(/\/$/, ''),
    async credentials() {
      const opts: https.RequestOptions = { headers: {} };
      await kc.applyToHTTPSOptions(opts);
      const headers = opts.headers as Record<string, string>;
      if (cluster.proxyUrl || cluster.server.startsWith('http:')) return { agent: opts.agent instanceof http.Agent ? opts.agent : undefined, headers };
      pooled ??= new https.Agent({
        keepAlive: true,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        pfx: opts.pfx,
        passphrase: opts.passphrase,
        servername: opts.servername,
        // Off only when the kubeconfig says so (insecure-skip-tls-verify), never by NODE_TLS_REJECT_UNAUTHORIZED.
        rejectUnauthorized: opts.rejectUnauthorized ?? true,
      });
      return { agent: pooled, headers };
    },
  };
  adapted.set(kc, api);
  return api;
}
