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

/**
 * GET a path on the API server and parse the JSON, with the kubeconfig's credentials and CA.
 * Used for lists so that list items and watch events are the same plain JSON (client-node's typed
 * calls turn timestamps into Dates, its Watch does not).
 */
export async function getJson<T>(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  signal?: AbortSignal,
): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  const transport = url.protocol === 'http:' ? http : https;
  if (transport === https) opts.agent = keepAliveAgent(kc, opts) ?? opts.agent;
  return new Promise<T>((resolve, reject) => {
    const req = transport.request(url, { ...opts, signal }, (res) => {
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
