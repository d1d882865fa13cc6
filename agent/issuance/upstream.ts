import { headerValue, requestText } from './http-client.js';

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
  const res = await requestText(new URL(upstreamImds + pathAndQuery), { headers: { Metadata: 'true' }, timeoutMs });
  return { status: res.status, text: res.text, contentType: headerValue(res.headers, 'content-type'), retryAfter: headerValue(res.headers, 'retry-after') };
}
