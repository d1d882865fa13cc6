/**
 * The agent's HTTP client for Azure AD and the node's IMDS, on `node:http`/`node:https`.
 *
 * Not `fetch`: its HTTP parser is undici's llhttp compiled to WebAssembly, which costs the agent about 16 MB of
 * RSS from its first request on (agent/README.md "## Memory"), while `node:http` is loaded anyway for the IMDS
 * server and the API-server client. Node's global agents keep connections alive, as fetch's pool did.
 */
import type { Agent, IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { http } from '../../lib/node-http.js';

/** Larger than any IMDS document or Azure AD answer; a server that sends more is not one of them. */
export const MAX_ANSWER_BYTES = 4 * 2 ** 20;

export interface TextRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /**
   * Covers the whole answer, body included: a server that stalls mid-answer is as unreachable as a silent one.
   * Required: node:http has no timeout of its own, so a request without one to a stalled server never ends.
   */
  timeoutMs: number;
  /** The connection pool to use instead of Node's global one (which follows NODE_USE_ENV_PROXY's proxy). */
  agent?: Agent;
}

export interface TextAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/**
 * One request, answered as text. Rejects on transport failure, on the timeout, on an answer over
 * MAX_ANSWER_BYTES, on a redirect (never followed: the agent talks only to the endpoints it was given) and on
 * an HTTPS server whose certificate does not verify, whatever NODE_TLS_REJECT_UNAUTHORIZED says.
 */
export function requestText(target: string | URL, { method = 'GET', headers = {}, body, timeoutMs, agent }: TextRequest): Promise<TextAnswer> {
  const url = typeof target === 'string' ? new URL(target) : target;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return Promise.reject(new Error(`unsupported URL scheme ${url.protocol}`));
  const send = url.protocol === 'https:' ? httpsRequest : http.request;
  const sent: Record<string, string | number> = { ...headers };
  if (body !== undefined) sent['Content-Length'] = Buffer.byteLength(body);
  return new Promise<TextAnswer>((resolve, reject) => {
    /** Why the agent gave up on the request, which wins over how the socket then reported it. */
    let failure: Error | undefined;
    const settle = (err: Error | undefined, answer?: TextAnswer) => {
      clearTimeout(timer);
      if (err) reject(failure ?? err);
      else resolve(answer!);
    };
    // Azure AD is verified whatever the environment says: NODE_TLS_REJECT_UNAUTHORIZED=0 would otherwise turn
    // verification off (trusted CAs still come from the system store and NODE_EXTRA_CA_CERTS).
    const req = send(url, { method, headers: sent, ...(url.protocol === 'https:' ? { rejectUnauthorized: true } : {}), ...(agent ? { agent } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) return giveUp(new Error(`${url.origin} answered with a redirect (${status}), which the agent does not follow`));
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) return giveUp(new Error(`${url.origin} answered with more than ${MAX_ANSWER_BYTES} bytes`));
        chunks.push(chunk);
      });
      res.on('end', () => settle(undefined, { status, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('close', () => {
        if (!res.complete) settle(new Error(`${url.origin} closed the connection before the answer was complete`));
      });
    });
    const giveUp = (err: Error) => {
      failure ??= err;
      req.destroy(err);
      settle(err);
    };
    req.on('error', (err) => settle(err));
    // Its own timer, cleared once answered, not a signal: the socket goes back to the pool afterwards.
    const timer = setTimeout(() => giveUp(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    req.end(body);
  });
}

/** A header's one value (a repeated header's first). */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
