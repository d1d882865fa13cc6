import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { keepAliveAgent } from './pooled.js';

/** An HTTP error from a raw API request, shaped like client-node's ApiException (`code`, `body`). */
export class RawApiError extends Error {
  constructor(
    readonly code: number,
    readonly body: string,
  ) {
    super(`HTTP ${code}: ${body.slice(0, 300)}`);
    this.name = 'RawApiError';
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiRequest {
  url: URL;
  transport: typeof http | typeof https;
  options: https.RequestOptions;
}

/**
 * Everything a raw API server request needs: the URL with its query, the kubeconfig's credentials (read
 * per call, as client-node does: token files and exec plugins rotate) and its CA, over the keep-alive pool.
 */
export async function apiRequest(kc: KubeConfig, method: string, path: string, query: Query = {}, headers: Record<string, string | number> = {}): Promise<ApiRequest> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  const options: https.RequestOptions = { method, headers: { Accept: 'application/json', ...headers } };
  await kc.applyToHTTPSOptions(options);
  const transport = url.protocol === 'http:' ? http : https;
  if (transport === https) options.agent = keepAliveAgent(kc, options) ?? options.agent;
  return { url, transport, options };
}

/**
 * GET a path on the API server and parse the JSON, with the kubeconfig's credentials and CA.
 * Used for lists so that list items are the same plain JSON as watch events (client-node's typed calls
 * turn timestamps into Dates).
 */
export async function getJson<T>(kc: KubeConfig, path: string, query: Query, signal?: AbortSignal): Promise<T> {
  const { url, transport, options } = await apiRequest(kc, 'GET', path, query);
  return new Promise<T>((resolve, reject) => {
    const req = transport.request(url, { ...options, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 0) >= 300) return reject(new RawApiError(res.statusCode ?? 0, text));
        try {
          resolve(JSON.parse(text) as T);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}
