import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Mode } from '../lib/api/types.js';
import type { Logger } from '../lib/log.js';
import type { Attributor } from './attribution/attributor.js';
import { auditKey, type AuditLog, type AuditRecord } from './audit.js';
import type { ExceptionDirectory, ImdsException } from './attribution/exceptions.js';
import type { IdentityDirectory, PodDirectory, PodInfo } from './attribution/types.js';
import { cacheKeyOf, type TokenCache } from './cache/token-cache.js';
import type { IssuanceLimits } from './issuance/limits.js';
import {
  badRequest,
  checkCommon,
  ImdsError,
  MULTIPLE_IDENTITIES,
  singleValuedQuery,
  TOKEN_PATH,
  tokenBody,
  tokenQuery,
  unavailable,
  type IssuedToken,
  type Route,
  type TokenRequest,
} from './imds/protocol.js';
import { redactAnswer } from './imds/metadata-allowlist.js';
import { MalformedTarget, type CanonicalTarget } from './imds/target.js';
import { TargetParser, type ParsedTarget } from './imds/parsed-target.js';
import { IdentitySelector, type ReadyIdentity } from './issuance/select.js';
import { UpstreamClock, UpstreamError, type Issuer } from './issuance/types.js';
import { callNodeImds } from './issuance/upstream.js';
import type { HotChild } from './hot-histogram.js';
import type { AgentMetrics, RequestResult } from './metrics.js';

export interface HandlerDeps {
  nodeName: string;
  defaultMode: Mode;
  notReadyWaitMs: number;
  metadataProxy: boolean;
  upstreamImds: string;
  upstreamTimeoutMs: number;
  attributor: Attributor;
  pods: PodDirectory;
  identities: IdentityDirectory;
  issuers: Record<Mode, Issuer>;
  cache: TokenCache;
  metrics: AgentMetrics;
  logger: Logger;
  /** Where token decisions are recorded (one line per distinct decision per window). */
  audit: AuditLog;
  /** IMDS exceptions (`--exceptions-configmap`); absent: the feature is off and nobody is passed through. */
  exceptions?: ExceptionDirectory;
  /** Per-identity caps on upstream work (429 past them); absent: uncapped. */
  issuanceLimits?: IssuanceLimits;
}

/** Retry-After for answers that a short wait will fix (identity becoming Ready, IP reuse settling). */
const RETRY_AFTER_SECONDS = 5;

interface Outcome {
  result: RequestResult;
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  pod?: PodInfo;
  identity?: ReadyIdentity;
  resource?: string;
  cacheHit?: boolean;
  mode?: Mode;
  reason?: string;
  /** Set when this request fetched a new token itself: the time it waited on upstream round trips for it. */
  upstreamSeconds?: number;
}

/**
 * The IMDS endpoint pods reach through the DNAT. Composes the four parts in this order on every request:
 * protocol checks → attribution (TCP source address only) → identity selection → cache → issuance.
 * Authorisation (the first three) always runs before the cache is consulted. The request target is put in
 * canonical form first, and routing, forwarding and auditing all use that form, never the raw target.
 */
export function createImdsHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const targets = new TargetParser();
  const ctx: Ctx = { ...deps, selector: new IdentitySelector(deps.defaultMode), decided: new WeakMap() };
  return (req, res) => {
    let parsed: ParsedTarget;
    try {
      parsed = targets.parse(req.url ?? '/');
    } catch (err) {
      if (!(err instanceof MalformedTarget)) throw err;
      const refusal = errorOutcome(badRequest(err.reason));
      send(res, refusal.status, refusal.body, refusal.headers);
      return;
    }
    const { target, route: where } = parsed;
    if (where.kind === 'token') {
      const started = performance.now();
      if (answerFromCache(ctx, req, res, parsed, started)) return;
      void handleToken(ctx, req, res, parsed, started).then((outcome) => outcome !== ANSWERED && send(res, outcome.status, outcome.body, outcome.headers));
      return;
    }
    void handleOther(ctx, req, target, where).then(
      (o) => send(res, o.status, o.body, o.headers),
      (err: unknown) => send(res, 500, { error: 'internal_error', error_description: (err as Error).message }),
    );
  };
}

/** The handler's own state beside its dependencies. */
interface Ctx extends HandlerDeps {
  selector: IdentitySelector;
  /** Per pod (a new PodInfo whenever the pod changes): the last cached-token decision it was answered with. */
  decided: WeakMap<PodInfo, CachedDecision>;
}

/**
 * The HTTP server for the IMDS endpoint. Node never hands a CONNECT to the request handler (it drops the
 * connection unanswered when nobody listens for it), so it is answered here, like any other method but GET.
 */
/** CONNECT never reaches a request handler: answer it here, IMDS-shaped, so no tunnel toward the node IMDS opens. */
export function refuseTunnels(server: Server): void {
  server.on('connect', (req: IncomingMessage, socket: Duplex) => refuseTunnel(req, socket));
}

/** How long a refused CONNECT's socket may wait for the client to close its side. */
const TUNNEL_LINGER_MS = 5_000;

function refuseTunnel(req: IncomingMessage, socket: Duplex): void {
  const err = new ImdsError(405, 'invalid_request', `Method ${req.method ?? ''} not allowed: only GET is supported`, { Allow: 'GET' });
  const body = JSON.stringify(err.body());
  const head = [`HTTP/1.1 ${err.status} Method Not Allowed`, 'Content-Type: application/json; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Allow: GET', 'Connection: close'];
  socket.on('error', () => socket.destroy());
  // A CONNECT socket has left the HTTP server's timeouts: a client that never closes its side must not hold it.
  if (socket instanceof Socket) socket.setTimeout(TUNNEL_LINGER_MS, () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': headers['Content-Type'] ?? 'application/json; charset=utf-8', 'Content-Length': bytes.length, ...headers });
  res.end(bytes);
}

/** `decide` answered the request itself, from the cache (see `answerKnown`), and recorded it. */
const ANSWERED = Symbol('answered from the cache');

async function handleToken(deps: Ctx, req: IncomingMessage, res: ServerResponse, parsed: ParsedTarget, started: number): Promise<Outcome | typeof ANSWERED> {
  let outcome: Outcome | typeof ANSWERED;
  try {
    outcome = await decide(deps, req, res, parsed, started);
  } catch (err) {
    outcome = errorOutcome(err);
  }
  if (outcome !== ANSWERED) record(deps, req, outcome, started);
  return outcome;
}

/** Metrics and the audit log for one answered token request. */
function record(deps: HandlerDeps, req: IncomingMessage, outcome: Outcome, started: number): void {
  const seconds = (performance.now() - started) / 1000;
  deps.metrics.tokenRequests.inc({ result: outcome.result });
  deps.metrics.tokenRequestDuration.observe({ code: String(outcome.status), cache: outcome.cacheHit ? 'hit' : 'miss', mode: outcome.mode ?? 'none' }, seconds);
  if (outcome.upstreamSeconds !== undefined && outcome.status === 200 && outcome.mode) {
    deps.metrics.missOverhead.observe({ mode: outcome.mode }, Math.max(0, seconds - outcome.upstreamSeconds));
  }
  audit(deps, outcome, req, seconds);
}

/**
 * What a cached-token answer for one pod derives from its decision: kept on the pod's PodInfo while the other
 * inputs are the very same objects (the selected identity, the parsed request) and the peer address is the
 * same. PodInfos and identities are replaced, never changed, when anything in them changes. Only the work that
 * follows from the decision is kept; the decision itself (attribution, selection) runs on every request.
 */
interface CachedDecision {
  identity: ReadyIdentity;
  /** The connection's peer address, which the audit record names. */
  sourceIp: string | undefined;
  request: TokenRequest;
  cacheKey: string;
  fetch: () => Promise<IssuedToken>;
  /** The audit log's key for this decision answered from the cache (durations aside, every field is fixed). */
  auditKey: string;
  audit: Omit<AuditRecord, 'durationMs'>;
  duration: HotChild;
}

/**
 * The common case answered at once: a well-formed token request on a connection already verified, whose pod the
 * fresh cache still shows, with one selected identity and its token cached. The same checks in the same order
 * as `decide` (protocol, attribution, selection, then the cache), only without a promise each; anything else
 * (a refusal, a wait, a read, a miss) is left to `decide`, which answers it from the start. True when answered.
 */
function answerFromCache(ctx: Ctx, req: IncomingMessage, res: ServerResponse, parsed: ParsedTarget, started: number): boolean {
  if (!parsed.token || 'error' in parsed.token || parsed.token.request.bypassCache) return false;
  try {
    checkCommon(req.method, req.headers);
  } catch {
    return false;
  }
  if (!ctx.identities.hasSynced() || !ctx.identities.isFresh()) return false;
  const socket = req.socket;
  const who = ctx.attributor.attributeKnown(socket);
  if (who?.kind !== 'pod') return false;
  const request = parsed.token.request;
  const selection = ctx.selector.select(ctx.attributor.identitiesFor(who.pod), request.hint);
  if (selection.kind !== 'selected') return false;
  return answerKnown(ctx, socket, res, who.pod, selection.identity, request, started);
}

/**
 * Answers from the cache for a decision already made (the pod attributed, its identity selected), and records
 * it; false, having done nothing, when the token is not cached.
 */
function answerKnown(ctx: Ctx, socket: Socket, res: ServerResponse, pod: PodInfo, identity: ReadyIdentity, request: TokenRequest, started: number): boolean {
  let d = ctx.decided.get(pod);
  if (d?.identity !== identity || d.request !== request || d.sourceIp !== socket.remoteAddress) {
    d = cachedDecision(ctx, socket, pod, identity, request);
    ctx.decided.set(pod, d);
  }
  const token = ctx.cache.hit(d.cacheKey, d.fetch);
  if (!token) return false;
  const body = serializedBody(token, d.identity.clientId, request);
  const seconds = (performance.now() - started) / 1000;
  ctx.metrics.countIssued();
  d.duration.observe(seconds);
  const ms = roundMs(seconds);
  ctx.audit.recordKeyed(d.auditKey, ms, () => ({ ...d.audit, durationMs: ms }));
  sendOk(res, body);
  return true;
}

function cachedDecision(ctx: Ctx, socket: Socket, pod: PodInfo, identity: ReadyIdentity, request: TokenRequest): CachedDecision {
  const principalKey = principal(identity, pod);
  const outcome: Outcome = { pod, identity, resource: request.resource, mode: identity.mode, result: 'issued', status: 200, cacheHit: true, body: undefined };
  const audit = auditRecord(outcome, socket.remoteAddress);
  const { durationMs: _none, ...fixed } = audit;
  return {
    identity,
    sourceIp: socket.remoteAddress,
    request,
    cacheKey: cacheKeyOf(principalKey, request.resource),
    fetch: fetcher(ctx, request, pod, identity, principalKey, () => undefined),
    auditKey: auditKey(audit),
    audit: fixed,
    // HotHistogram resolves one child per label set; a decision is built only when the pod, identity or request changes.
    duration: ctx.metrics.tokenRequestDuration.child({ code: '200', cache: 'hit', mode: identity.mode }),
  };
}

/** Response headers of a 200 token answer, by body length (the length barely varies): one object each. */
const okHeaders = new Map<number, Record<string, string | number>>();

function sendOk(res: ServerResponse, body: Buffer): void {
  let headers = okHeaders.get(body.length);
  if (!headers) {
    if (okHeaders.size > 64) okHeaders.clear();
    okHeaders.set(body.length, (headers = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length }));
  }
  res.writeHead(200, headers);
  res.end(body);
}

function errorOutcome(err: unknown): Outcome {
  if (err instanceof ImdsError) return { result: err.status === 400 || err.status === 405 ? 'bad_request' : err.status === 429 ? 'rate_limited' : 'denied', status: err.status, body: err.body(), headers: err.headers };
  if (err instanceof UpstreamError) {
    const headers: Record<string, string> = err.retryAfterSeconds ? { 'Retry-After': String(err.retryAfterSeconds) } : {};
    return { result: 'upstream_error', status: err.status, body: { error: err.code, error_description: err.message }, headers, reason: err.message };
  }
  return { result: 'upstream_error', status: 500, body: { error: 'internal_error', error_description: (err as Error)?.message ?? 'unknown error' }, reason: String(err) };
}

async function decide(deps: Ctx, req: IncomingMessage, res: ServerResponse, parsed: ParsedTarget, started: number): Promise<Outcome | typeof ANSWERED> {
  checkCommon(req.method, req.headers);
  if (!parsed.token) throw new Error('not a token request');
  if ('error' in parsed.token) throw parsed.token.error;
  const request = parsed.token.request;
  const deadline = Date.now() + deps.notReadyWaitMs;
  if (!deps.identities.hasSynced()) {
    return { result: 'not_ready', status: 503, ...errBody(unavailable('The pod identity agent is starting; its caches are not synced yet', 1)) };
  }
  // A PodIdentity deleted or unbound while the watch was broken may still show: the cache cannot say yes.
  if (!deps.identities.isFresh()) {
    return { result: 'not_ready', status: 503, ...errBody(unavailable('The pod identity agent is reconnecting to the API server and cannot authorise this request yet; retry shortly', 5)) };
  }
  // Authorisation runs on every request, before the cache: a deleted or unbound pod gets nothing, cached or not.
  for (;;) {
    const who = await deps.attributor.attribute(req.socket);
    if (who.kind === 'unknown') {
      return deny('unknown_pod', badRequest(`Identity not found: no pod on node ${deps.nodeName} has IP ${who.ip || 'unknown'}. Pod identities are only issued to Running or Pending pods of this node, never to hostNetwork pods or the node itself, and to a pod being deleted only on a connection it opened before.`));
    }
    if (who.kind === 'ambiguous') {
      const names = who.pods.map((p) => `${p.namespace}/${p.name}`).join(', ');
      return { ...deny('ambiguous_pod', unavailable(`IP ${who.ip} is claimed by more than one live pod (${names}); refusing until only one remains`, RETRY_AFTER_SECONDS)) };
    }
    const pod = who.pod;
    const selection = deps.selector.select(deps.attributor.identitiesFor(pod), request.hint);
    switch (selection.kind) {
      case 'selected':
        // A new connection's first request, once attributed, is as cheap as the next ones when the token is cached.
        if (!request.bypassCache && answerKnown(deps, req.socket, res, pod, selection.identity, request, started)) return ANSWERED;
        return issue(deps, request, pod, selection.identity);
      case 'multiple':
        return { ...deny('denied', badRequest(MULTIPLE_IDENTITIES)), pod, resource: request.resource, reason: `PodIdentities ${selection.candidates.join(', ')}` };
      case 'none': {
        // Only a pod that no PodIdentity selects at all may use an exception; a selected pod never does.
        const exception = selection.candidates.length === 0 ? deps.exceptions?.match(pod) : undefined;
        // An exception revoked while the ConfigMap's watch was broken may still show: the cache cannot say yes.
        if (exception && !deps.exceptions?.isFresh()) {
          return { ...deny('not_ready', unavailable('The pod identity agent is reconnecting to the API server and cannot tell whether an IMDS exception still applies to this pod; retry shortly', RETRY_AFTER_SECONDS)), pod, resource: request.resource };
        }
        if (exception) return passThrough(deps, pod, request, exception);
        const what = selection.candidates.length
          ? `none of the PodIdentities that select pod ${pod.namespace}/${pod.name} (${selection.candidates.join(', ')}) has the requested ${hintName(request)}`
          : `no PodIdentity in namespace ${pod.namespace} selects pod ${pod.name}. Check that a PodIdentity in the pod's own namespace has a selector matching the pod's labels (default label podidentity.dev/identity=<PodIdentity name>)`;
        return { ...deny('denied', badRequest(`Identity not found: ${what}`)), pod, resource: request.resource };
      }
      case 'not_ready': {
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          return {
            ...deny('not_ready', unavailable(`PodIdentity ${selection.names.join(', ')} in namespace ${pod.namespace} is not Ready yet; retry shortly`, RETRY_AFTER_SECONDS)),
            pod,
            resource: request.resource,
          };
        }
        // Woken by the informer when a PodIdentity in the namespace changes; never a polling sleep.
        await deps.identities.nextChange(pod.namespace, AbortSignal.timeout(remaining));
      }
    }
  }
}

function hintName(request: TokenRequest): string {
  return request.hint.kind === 'none' ? 'identity' : `${request.hint.kind === 'msi_res_id' ? request.hint.param : request.hint.kind} ${request.hint.value}`;
}

function errBody(err: ImdsError): { body: unknown; headers: Record<string, string> } {
  return { body: err.body(), headers: err.headers };
}

function deny(result: RequestResult, err: ImdsError): Outcome {
  return { result, status: err.status, ...errBody(err), reason: err.description };
}

/**
 * Whose token it is, for the cache and the issuance caps: the identity and the pod's service account, in
 * both modes. Federated tokens come from the service account's federated credential. A Node-mode token does
 * not depend on the pod, but an identity can be bound in several namespaces (`identity.existing`): sharing
 * its cache slots and caps would let one namespace evict and starve another's tokens.
 */
function principal(identity: ReadyIdentity, pod: PodInfo): string {
  return `${identity.mode}|${identity.clientId}|${pod.namespace}/${pod.serviceAccountName}`;
}

async function issue(deps: HandlerDeps, request: TokenRequest, pod: PodInfo, identity: ReadyIdentity): Promise<Outcome> {
  const base = { pod, identity, resource: request.resource, mode: identity.mode };
  const who = principal(identity, pod);
  // Only a request that runs the fetch itself has a miss of its own (others share it: single-flight).
  let upstream: UpstreamClock | undefined;
  const fetch = fetcher(deps, request, pod, identity, who, (clock) => (upstream = clock));
  try {
    const { token, hit } = await deps.cache.get(cacheKeyOf(who, request.resource), fetch, { bypass: request.bypassCache });
    // A hit may start a background refresh (which runs `fetch`): that is not this request's miss.
    const measured = hit ? undefined : (upstream as UpstreamClock | undefined);
    return { ...base, result: 'issued', status: 200, cacheHit: hit, body: serializedBody(token, identity.clientId, request), ...(measured ? { upstreamSeconds: measured.ms / 1000 } : {}) };
  } catch (err) {
    return { ...base, ...errorOutcome(err) };
  }
}

/** The upstream fetch of a token for `identity`, capped per principal; `started` gets the fetch's upstream clock. */
function fetcher(deps: HandlerDeps, request: TokenRequest, pod: PodInfo, identity: ReadyIdentity, who: string, started: (clock: UpstreamClock) => void): () => Promise<IssuedToken> {
  return async () => {
    // Only upstream work is capped; a cached token is always served.
    deps.issuanceLimits?.admit(who, request.resource);
    const upstream = new UpstreamClock();
    started(upstream);
    return deps.issuers[identity.mode].issue({ identity, resource: request.resource, pod, upstream });
  };
}

interface SerializedBody {
  second: number;
  clientId: string;
  request: TokenRequest;
  bytes: Buffer;
}

/** The last answer built from each cached token: a pod polling its token gets the same bytes within a second. */
const lastBody = new WeakMap<IssuedToken, SerializedBody>();

function serializedBody(token: IssuedToken, clientId: string, request: TokenRequest): Buffer {
  const now = Math.floor(Date.now() / 1000);
  const last = lastBody.get(token);
  // The body is a function of the token, the second, the client id and the request (resource, hint); the
  // parsed request is one object per target, so its identity stands for both.
  if (last && last.second === now && last.clientId === clientId && last.request === request) return last.bytes;
  const bytes = Buffer.from(JSON.stringify(tokenBody(token, clientId, request, now)));
  lastBody.set(token, { second: now, clientId, request, bytes });
  return bytes;
}

/**
 * An IMDS exception: the token request goes to the node's IMDS as it was parsed (the token path, and the
 * query the agent decided on) and its answer comes back as is. Never cached: the node IMDS is the authority
 * for these tokens, and the cache is for pod identities.
 */
async function passThrough(deps: HandlerDeps, pod: PodInfo, request: TokenRequest, exception: ImdsException): Promise<Outcome> {
  const labels = Object.entries(exception.podLabels).map(([k, v]) => `${k}=${v}`).join(',');
  const reason = `IMDS exception ${exception.namespace} {${labels}}${exception.migratedFrom ? ` (${exception.migratedFrom})` : ''}`;
  const base = { pod, resource: request.resource, reason };
  const started = performance.now();
  try {
    const answer = await callNodeImds(deps.upstreamImds, `${TOKEN_PATH}?${tokenQuery(request)}`, deps.upstreamTimeoutMs);
    deps.metrics.upstreamDuration.observe({ upstream: 'imds', code: String(answer.status) }, (performance.now() - started) / 1000);
    const headers: Record<string, string> = { 'Content-Type': answer.contentType ?? 'application/json; charset=utf-8' };
    if (answer.retryAfter) headers['Retry-After'] = answer.retryAfter;
    return { ...base, result: 'exception', status: answer.status, body: answer.text, headers };
  } catch (err) {
    deps.metrics.upstreamDuration.observe({ upstream: 'imds', code: 'error' }, (performance.now() - started) / 1000);
    return { ...base, ...errorOutcome(new UpstreamError('imds', 503, 'imds_unreachable', `the node IMDS did not answer: ${(err as Error).message}`, 5)), reason };
  }
}

function audit(deps: HandlerDeps, o: Outcome, req: IncomingMessage, seconds: number): void {
  if (o.result === 'bad_request') {
    deps.logger.debug('malformed IMDS request', { status: o.status, path: req.url?.split('?')[0], sourceIp: req.socket.remoteAddress });
    return;
  }
  deps.audit.record({ ...auditRecord(o, req.socket.remoteAddress), durationMs: roundMs(seconds) });
}

/** One record per issued or denied token. Never the token: the body is not logged. */
function auditRecord(o: Outcome, sourceIp: string | undefined): AuditRecord {
  return {
    message: o.result === 'issued' ? 'token issued' : o.result === 'exception' ? 'token request passed through to the node IMDS (exception)' : 'token denied',
    result: o.result,
    status: o.status,
    sourceIp,
    pod: o.pod?.name,
    namespace: o.pod?.namespace,
    podIdentity: o.identity?.name,
    clientId: o.identity?.clientId,
    mode: o.mode,
    resource: o.resource,
    cacheHit: o.cacheHit ?? false,
    reason: o.reason,
    durationMs: 0,
  };
}

function roundMs(seconds: number): number {
  return Math.round(seconds * 1000 * 100) / 100;
}

async function handleOther(deps: HandlerDeps, req: IncomingMessage, target: CanonicalTarget, where: Exclude<Route, { kind: 'token' }>): Promise<Outcome> {
  let query: Map<string, string>;
  try {
    checkCommon(req.method, req.headers);
    query = singleValuedQuery(target.query);
  } catch (err) {
    return errorOutcome(err);
  }
  switch (where.kind) {
    case 'not_found':
      return { result: 'bad_request', status: 404, body: { error: 'not_found', error_description: `Path ${target.path} not found` } };
    case 'disguised_separator':
      return errorOutcome(badRequest('Invalid path: an encoded separator (%2F, %5C) or a backslash is not allowed'));
    case 'not_allowed':
      return { result: 'denied', status: 403, body: { error: 'forbidden', error_description: `The pod identity agent does not proxy ${target.path}: it is not on the metadata proxy's allow-list` } };
  }
  if (!deps.metadataProxy) {
    return { result: 'denied', status: 403, body: { error: 'forbidden', error_description: `The pod identity agent does not proxy ${target.path} on this node` } };
  }
  // Exactly what was decided on: the canonical path and the parsed query, never the raw target.
  const search = new URLSearchParams([...query]).toString();
  try {
    const res = await callNodeImds(deps.upstreamImds, where.path + (search ? `?${search}` : ''), deps.upstreamTimeoutMs);
    deps.metrics.metadataProxied.inc({ code: String(res.status) });
    const body = redactAnswer(where.key, res.status, res.text);
    if (body === undefined) return { result: 'upstream_error', status: 502, body: { error: 'bad_gateway', error_description: `the node IMDS answered ${where.path} with a document the agent cannot read` } };
    return { result: 'issued', status: res.status, body, headers: { 'Content-Type': res.contentType ?? 'application/json; charset=utf-8' } };
  } catch (err) {
    deps.metrics.metadataProxied.inc({ code: 'error' });
    return { result: 'upstream_error', status: 502, body: { error: 'bad_gateway', error_description: `the node IMDS did not answer: ${(err as Error).message}` } };
  }
}
