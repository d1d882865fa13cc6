import { Agent as HttpsAgent } from 'node:https';
import { http } from '../../lib/node-http.js';
import { headerValue, requestText } from './http-client.js';

/**
 * The node's IMDS is link-local: asked through a proxy, it would be the proxy's host's IMDS that answers (or
 * the proxy that sees the tokens). So its connections are the agent's own pools, which no proxy setting of
 * the environment (NODE_USE_ENV_PROXY with HTTP_PROXY) reaches; kept alive like Node's global ones.
 */
const DIRECT = { 'http:': new http.Agent({ keepAlive: true, scheduling: 'lifo', timeout: 5_000 }), 'https:': new HttpsAgent({ keepAlive: true, scheduling: 'lifo', timeout: 5_000 }) };

/** One answer of the node's IMDS, as received. */
export interface ImdsAnswer {
  status: number;
  text: string;
  contentType?: string;
  retryAfter?: string;
}

/**
 * The agent's one HTTP client for the node's real IMDS (Node-mode tokens, the metadata proxy, IMDS
 * exceptions). Sends `Metadata: true`, never follows redirects, and the timeout covers the body too: a node
 * IMDS that stalls mid-answer is as unreachable as a silent one. Throws on transport failure only.
 */
export async function callNodeImds(upstreamImds: string, pathAndQuery: string, timeoutMs: number): Promise<ImdsAnswer> {
  const url = new URL(upstreamImds + pathAndQuery);
  const res = await requestText(url, { headers: { Metadata: 'true' }, timeoutMs, agent: url.protocol === 'https:' ? DIRECT['https:'] : DIRECT['http:'] });
  return { status: res.status, text: res.text, contentType: headerValue(res.headers, 'content-type'), retryAfter: headerValue(res.headers, 'retry-after') };
}
