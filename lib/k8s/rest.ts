import { http } from '../node-http.js';
import https from 'node:https';
import type { ApiServer } from './api-server.js';

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
 * Everything a raw API server request needs: the URL with its query, and the credentials (fetched per
 * call: token files and exec plugins rotate) with the TLS settings, over the source's keep-alive pool.
 */
export async function apiRequest(api: ApiServer, method: string, path: string, query: Query = {}, headers: Record<string, string | number> = {}): Promise<ApiRequest> {
  const url = new URL(api.server + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  const credentials = await api.credentials();
  const options: https.RequestOptions = { method, headers: { Accept: 'application/json', ...headers, ...credentials.headers } };
  if (credentials.agent) options.agent = credentials.agent;
  const transport = url.protocol === 'http:' ? http : https;
  return { url, transport, options };
}

/**
 * GET a path on the API server and parse the JSON.
 * Used for lists so that list items and watch events are the same plain JSON (client-node's typed
 * calls turn timestamps into Dates, its Watch does not).
 */
export function getJson<T>(api: ApiServer, path: string, query: Query, signal?: AbortSignal): Promise<T> {
  return requestJson<T>(api, 'GET', path, { query, signal });
}

export interface JsonRequest {
  query?: Query;
  /** Sent as JSON with this content type (a patch names its strategy here). */
  body?: { contentType: string; value: unknown };
  signal?: AbortSignal;
}

/** One raw API request answered as plain JSON; a status of 300 or more rejects with a RawApiError. */
export async function requestJson<T>(api: ApiServer, method: string, path: string, { query = {}, body, signal }: JsonRequest = {}): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body.value);
  const headers: Record<string, string | number> = payload === undefined ? {} : { 'Content-Type': body!.contentType, 'Content-Length': Buffer.byteLength(payload) };
  const { url, transport, options } = await apiRequest(api, method, path, query, headers);
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
    req.end(payload);
  });
}
