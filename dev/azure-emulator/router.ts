/**
 * A small router shared by the HTTPS (ARM + Azure AD) and HTTP (IMDS) servers: route matching on a
 * normalised path, request bodies, fault injection, the request log and error shapes per route family.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { FaultInjector } from './faults.js';
import type { RequestLog } from './request-log.js';
import type { RouteFamily, RouteName } from './routes.js';

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Throw this from a handler to answer with `reply`. */
export class ReplyError extends Error {
  constructor(readonly reply: Reply) {
    super(`HTTP ${reply.status}`);
  }
}

export function armError(status: number, code: string, message: string, headers?: Record<string, string>): ReplyError {
  return new ReplyError({ status, body: { error: { code, message } }, ...(headers ? { headers } : {}) });
}

export function aadError(status: number, error: string, aadsts: number, description: string): ReplyError {
  const traceId = randomUUID();
  const correlationId = randomUUID();
  const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return new ReplyError({
    status,
    body: {
      error,
      error_description: `AADSTS${aadsts}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
      error_codes: [aadsts],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
    },
  });
}

export function imdsError(status: number, error: string, description: string): ReplyError {
  return new ReplyError({ status, body: { error, error_description: description } });
}

export interface RequestContext {
  req: IncomingMessage;
  method: string;
  /** Path with leading slashes collapsed and percent-escapes decoded. */
  path: string;
  query: URLSearchParams;
  /** Regex capture groups of the route, decoded. */
  params: string[];
  rawBody: Buffer;
  /** Caller's TCP source address (IPv4-mapped prefix removed). */
  remoteAddress: string;
  /** `https://host:port` as the client addressed us (used for absolute links). */
  baseUrl: string;
  /** Parsed JSON body; an ARM-shaped 400 when it is not JSON. */
  json(): unknown;
  /** Form-encoded body. */
  form(): URLSearchParams;
  /** Set by the ARM authentication step. */
  caller?: Caller;
}

export interface Caller {
  principalId: string;
  clientId: string;
}

export interface Route {
  name: RouteName;
  method: string;
  pattern: RegExp;
  family: RouteFamily;
  /** An ARM route real ARM serves without a bearer token (its cloud metadata). */
  anonymous?: boolean;
  handle(ctx: RequestContext): Promise<Reply> | Reply;
}

export interface RouterHooks {
  /** Runs before an ARM route's handler (api-version, bearer); throw a ReplyError to refuse. */
  beforeArm(ctx: RequestContext, route: Route): Promise<void>;
  faults: FaultInjector;
  log: RequestLog;
  /** Aborted when the emulator stops: pending latency timers give up. */
  stopping: AbortSignal;
  /** The error family for paths no route matched. */
  defaultFamily: RouteFamily;
  /** Further normalisation of the decoded path before routes match (IMDS reads paths leniently). */
  normalisePath?: (decoded: string) => string;
}

export class Router {
  private readonly routes: Route[] = [];

  constructor(private readonly hooks: RouterHooks) {}

  add(...routes: Route[]): this {
    this.routes.push(...routes);
    return this;
  }

  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    void this.serve(req, res).catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        send(res, { status: 500, body: { error: { code: 'InternalServerError', message: String(err) } } });
      }
    });
  };

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const method = (req.method ?? 'GET').toUpperCase();
    // `//subscriptions/...` (arm-authorization with a leading-slash scope) must not become a host name.
    const rawUrl = (req.url ?? '/').replace(/^\/+/, '/');
    const url = new URL(rawUrl, 'http://emulator.invalid');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      path = url.pathname;
    }
    if (this.hooks.normalisePath) path = this.hooks.normalisePath(path);
    let route: Route | undefined;
    let params: string[] = [];
    let pathMatched = false;
    for (const candidate of this.routes) {
      const m = candidate.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (candidate.method !== method) continue;
      route = candidate;
      params = m.slice(1).map((p) => p ?? '');
      break;
    }
    const family: RouteFamily = route?.family ?? this.hooks.defaultFamily;
    const routeName: RouteName = route?.name ?? 'unknown';
    const record = (status: number, fault = false) =>
      this.hooks.log.record({ method, route: routeName, path, status, at: started, durationMs: Date.now() - started, ...(fault ? { fault } : {}) });

    const rawBody = await readBody(req);
    const fault = this.hooks.faults.decide(method, path, routeName);
    if (fault) {
      if (fault.latencyMs > 0 && !(await pause(fault.latencyMs, this.hooks.stopping))) return;
      if (fault.hang) {
        record(0, true);
        return; // never answered; the socket is destroyed when the client gives up or the server stops
      }
      if (fault.status !== undefined) {
        const reply = faultReply(family, fault.status, fault.retryAfterSeconds);
        send(res, reply);
        record(reply.status, true);
        return;
      }
    }

    let reply: Reply;
    if (!route) {
      reply = notFound(family, method, path, pathMatched);
    } else {
      const host = req.headers.host ?? 'localhost';
      const secure = 'encrypted' in req.socket && Boolean((req.socket as { encrypted?: boolean }).encrypted);
      const ctx: RequestContext = {
        req,
        method,
        path,
        query: url.searchParams,
        params,
        rawBody,
        remoteAddress: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
        baseUrl: `${secure ? 'https' : 'http'}://${host}`,
        json() {
          try {
            return JSON.parse(rawBody.toString('utf8')) as unknown;
          } catch {
            throw armError(400, 'InvalidRequestContent', 'The request content was invalid and could not be deserialized.');
          }
        },
        form() {
          return new URLSearchParams(rawBody.toString('utf8'));
        },
      };
      try {
        if (route.family === 'arm' && !route.anonymous) await this.hooks.beforeArm(ctx, route);
        reply = await route.handle(ctx);
      } catch (err) {
        if (err instanceof ReplyError) reply = err.reply;
        else throw err;
      }
    }
    if (res.destroyed) return;
    send(res, reply);
    record(reply.status, fault !== undefined);
  }
}

function notFound(family: RouteFamily, method: string, path: string, pathMatched: boolean): Reply {
  if (family === 'imds') {
    if (pathMatched) return { ...imdsError(405, 'invalid_request', `Method ${method} not allowed: only GET is supported`).reply, headers: { Allow: 'GET' } };
    return imdsError(404, 'not_found', `Path ${path} not found`).reply;
  }
  if (family === 'aad') return aadError(404, 'invalid_request', 90002, `The endpoint ${path} does not exist.`).reply;
  if (pathMatched) return armError(405, 'MethodNotAllowed', `The HTTP method '${method}' is not supported at '${path}'.`).reply;
  return armError(404, 'NoRegisteredProviderFound', `No registered resource provider found for path '${path}'.`).reply;
}

function faultReply(family: RouteFamily, status: number, retryAfterSeconds: number | undefined): Reply {
  const headers: Record<string, string> = retryAfterSeconds !== undefined ? { 'Retry-After': String(retryAfterSeconds) } : {};
  let reply: Reply;
  if (family === 'aad') {
    reply = aadError(status, status === 429 ? 'temporarily_unavailable' : 'server_error', status === 429 ? 50196 : 50000, 'Injected fault.').reply;
  } else if (family === 'imds') {
    reply = imdsError(status, status === 429 ? 'too_many_requests' : 'service_unavailable', 'Injected fault.').reply;
  } else {
    const code = status === 429 ? 'TooManyRequests' : status === 503 ? 'ServiceUnavailable' : status >= 500 ? 'InternalServerError' : 'InjectedFault';
    reply = armError(status, code, `Injected fault (HTTP ${status}).`).reply;
  }
  return { ...reply, headers: { ...reply.headers, ...headers } };
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = { 'x-ms-request-id': randomUUID(), ...reply.headers };
  if (reply.body === undefined) {
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  const text = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
  headers['content-type'] ??= 'application/json; charset=utf-8';
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(reply.status, headers);
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves true after `ms`, or false if `signal` aborts first. */
export function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
