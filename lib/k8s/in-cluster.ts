import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import { isIP, isIPv6 } from 'node:net';
import { join } from 'node:path';
import type { ApiServer, RequestCredentials } from './api-server.js';

/** Where the kubelet mounts a pod's service-account token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * How long a token read from the file is reused. The kubelet rewrites a projected token at 80 % of its life,
 * so the old one is still valid for minutes; client-go and client-node re-read it every minute too.
 */
export const TOKEN_MAX_AGE_MS = 60_000;

export interface InClusterOptions {
  env?: NodeJS.ProcessEnv;
  /** The mounted service-account directory (tests point it elsewhere). */
  dir?: string;
  tokenMaxAgeMs?: number;
  now?: () => number;
}

/** A DNS name as the kubelet could set it (labels of letters, digits and inner hyphens). */
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** True when this process runs in a pod: the kubelet set the `kubernetes` Service's address and mounted a token. */
export function inClusterAvailable(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): boolean {
  if (!env['KUBERNETES_SERVICE_HOST'] || !env['KUBERNETES_SERVICE_PORT']) return false;
  try {
    readFileSync(join(dir, 'token'));
    return true;
  } catch {
    return false;
  }
}

/**
 * The API server as a pod reaches it: `KUBERNETES_SERVICE_HOST`/`_PORT`, verified against the mounted
 * `ca.crt` only (never the system roots, never skipped), with the mounted token as bearer. Always https,
 * whatever the port: the token never travels in clear.
 */
export function inClusterApiServer(opts: InClusterOptions = {}): ApiServer {
  const env = opts.env ?? process.env;
  const dir = opts.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!host) throw new Error('in-cluster config: KUBERNETES_SERVICE_HOST is not set');
  // Spliced into the URL the token is sent to: a `/`, `@`, `#`, `?` or `:` would move the request elsewhere.
  if (!isIP(host) && !DNS_NAME.test(host)) throw new Error(`in-cluster config: KUBERNETES_SERVICE_HOST must be an IP address or a DNS name, got "${host}"`);
  if (!port || !/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw new Error(`in-cluster config: KUBERNETES_SERVICE_PORT must be a port number, got "${port ?? ''}"`);
  const caFile = join(dir, 'ca.crt');
  let ca: Buffer;
  try {
    ca = readFileSync(caFile);
  } catch (err) {
    throw new Error(`in-cluster config: cannot read the API server CA ${caFile}: ${(err as Error).message}`, { cause: err });
  }
  const tokenFile = join(dir, 'token');
  const maxAgeMs = opts.tokenMaxAgeMs ?? TOKEN_MAX_AGE_MS;
  const now = opts.now ?? Date.now;
  // `ca` replaces Node's root store for this agent: only the cluster's CA can vouch for the API server. And
  // verification is on whatever the environment says (NODE_TLS_REJECT_UNAUTHORIZED=0 would otherwise turn it
  // off, and send the token to whoever answers).
  const agent = new https.Agent({ keepAlive: true, ca, rejectUnauthorized: true });
  let cached: { token: string; readAt: number } | undefined;
  let reading: Promise<string> | undefined;

  const readToken = async (): Promise<string> => {
    let text: string;
    try {
      text = await readFile(tokenFile, 'utf8');
    } catch (err) {
      throw new Error(`in-cluster config: cannot read the service-account token ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    const token = text.trim();
    if (!token) throw new Error(`in-cluster config: the service-account token ${tokenFile} is empty`);
    cached = { token, readAt: now() };
    return token;
  };

  const token = async (): Promise<string> => {
    if (cached && now() - cached.readAt < maxAgeMs) return cached.token;
    // One read at a time: concurrent requests at expiry share it.
    reading ??= readToken().finally(() => (reading = undefined));
    return reading;
  };

  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    async credentials(): Promise<RequestCredentials> {
      return { agent, headers: { Authorization: `Bearer ${await token()}` } };
    },
  };
}
