import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { UpstreamError } from './types.js';

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** A token response is a few KB; anything this large is not one. */
const MAX_BODY_BYTES = 1 << 20;
/** Azure AD tenants are GUIDs or verified domain names; anything else must not reach the URL path. */
const TENANT = /^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$/;

export interface ExchangeRequest {
  tenantId: string;
  clientId: string;
  /** v2 scope, `<resource>/.default`. */
  scope: string;
  /** The pod's service-account token. */
  assertion: string;
}

export interface ExchangedToken {
  accessToken: string;
  /** Unix seconds. */
  expiresOn: number;
  /** The HTTP status Azure AD answered with (for metrics). */
  status: number;
}

/** Thrown for Azure AD's refusals and transport failures; `metricCode` is the upstream metric's `code` label. */
export class ExchangeError extends UpstreamError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly metricCode: string,
    retryAfterSeconds?: number,
  ) {
    super('aad', status, code, message, retryAfterSeconds);
  }
}

interface RawAnswer {
  status: number;
  body: string;
  retryAfter?: string;
}

/**
 * The client-credentials grant with a federated client assertion (RFC 7521/7523), straight to Azure AD's
 * v2 token endpoint `<authorityHost>/<tenant>/oauth2/v2.0/token`.
 *
 * Why not msal-node: for this one grant it adds nothing the agent uses (no account, no token cache — the
 * agent has its own, keyed by pod), but costs per call: every result is written into the application's
 * in-memory cache, whose save scans every token already there (a miss grew slower with each resource
 * served), plus authority discovery per identity and one application object per identity held in memory.
 * This is one POST over a shared keep-alive connection pool.
 */
export class AzureAdExchange {
  private readonly transport: typeof https | typeof http;
  private readonly agent: https.Agent | http.Agent;
  private readonly base: string;

  constructor(authorityHost: string, options: { maxSockets?: number } = {}) {
    const url = new URL(authorityHost);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`authority host must be https, got ${authorityHost}`);
    this.base = authorityHost.replace(/\/+$/, '');
    this.transport = url.protocol === 'https:' ? https : http;
    // Idle connections close after 15 s: misses come in bursts (pods starting), not steadily.
    const agentOptions: http.AgentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 32, timeout: 15_000, scheduling: 'lifo' };
    // As Node's fetch (which msal-node used) does: HTTPS_PROXY/NO_PROXY only when NODE_USE_ENV_PROXY=1.
    if (process.env['NODE_USE_ENV_PROXY'] === '1') agentOptions.proxyEnv = process.env;
    this.agent = url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }

  async exchange(req: ExchangeRequest, timeoutMs: number): Promise<ExchangedToken> {
    if (!TENANT.test(req.tenantId)) throw new ExchangeError(500, 'bad_tenant', `tenantId ${JSON.stringify(req.tenantId.slice(0, 80))} is not a tenant id`, 'error');
    const url = `${this.base}/${req.tenantId}/oauth2/v2.0/token`;
    const form = new URLSearchParams({
      client_id: req.clientId,
      scope: req.scope,
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: req.assertion,
    }).toString();
    // Azure AD logs this id; whoever debugs a refusal can match the agent's log line to Azure's.
    const requestId = randomUUID();
    const started = Date.now();
    const deadline = started + timeoutMs;
    let answer: RawAnswer;
    try {
      answer = await this.post(url, form, requestId, deadline, timeoutMs);
    } catch (err) {
      if (err instanceof ExchangeError) throw err;
      throw new ExchangeError(500, 'network_error', `Azure AD could not be reached for client_id ${req.clientId} (client-request-id ${requestId}): ${(err as Error).message}`, 'error');
    }
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(answer.body) as Record<string, unknown>;
    } catch {
      /* described below */
    }
    if (answer.status !== 200) {
      const status = answer.status === 429 ? 429 : 500;
      const code = typeof body['error'] === 'string' ? body['error'] : 'aad_error';
      // Azure AD's own description (e.g. AADSTS70021: no matching federated credential) helps whoever debugs
      // it; its first line, as later lines carry trace ids and timestamps. It never echoes the assertion.
      const description = typeof body['error_description'] === 'string' ? body['error_description'] : `HTTP ${answer.status}`;
      const firstLine = description.split(/\r?\n/)[0]?.slice(0, 500) ?? '';
      const retryAfter = status === 429 ? Number(answer.retryAfter ?? '') || 5 : undefined;
      throw new ExchangeError(status, code, `Azure AD refused the federated token exchange for client_id ${req.clientId}: ${firstLine}`, String(answer.status), retryAfter);
    }
    const accessToken = body['access_token'];
    const expiresIn = Number(body['expires_in']);
    if (typeof accessToken !== 'string' || !accessToken || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw new ExchangeError(500, 'empty_response', 'Azure AD returned no token', '200');
    }
    // Counted from when the request left, so the token is never thought to live longer than it does.
    return { accessToken, expiresOn: Math.floor(started / 1000) + Math.floor(expiresIn), status: answer.status };
  }

  /**
   * One POST; a request that fails before any answer on a reused keep-alive connection (the server closed it
   * as we sent) is retried once on a new one. Repeating the exchange is harmless: it only issues a token.
   */
  private async post(url: string, form: string, requestId: string, deadline: number, timeoutMs: number): Promise<RawAnswer> {
    const first = await this.postOnce(url, form, requestId, deadline, timeoutMs);
    if ('answer' in first) return first.answer;
    if (!first.staleConnection || Date.now() >= deadline) throw first.err;
    const second = await this.postOnce(url, form, requestId, deadline, timeoutMs);
    if ('answer' in second) return second.answer;
    throw second.err;
  }

  private postOnce(url: string, form: string, requestId: string, deadline: number, timeoutMs: number): Promise<{ answer: RawAnswer } | { err: Error; staleConnection: boolean }> {
    return new Promise((resolve) => {
      let settled = false;
      let timedOut = false;
      let answered = false;
      const req = this.transport.request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            'Content-Type': 'application/x-www-form-urlencoded;charset=utf-8',
            'Content-Length': Buffer.byteLength(form),
            Accept: 'application/json',
            'client-request-id': requestId,
            'return-client-request-id': 'true',
          },
        },
        (res) => {
          answered = true;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_BODY_BYTES) return void req.destroy(new Error('Azure AD answer too large'));
            chunks.push(chunk);
          });
          res.on('error', fail);
          res.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            const retryAfter = res.headers['retry-after'];
            resolve({ answer: { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter } });
          });
        },
      );
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy();
      }, Math.max(1, deadline - Date.now()));
      timer.unref();
      function fail(err: Error): void {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (timedOut) return resolve({ err: new ExchangeError(504, 'timeout', `Azure AD did not answer within ${timeoutMs} ms`, 'timeout'), staleConnection: false });
        resolve({ err, staleConnection: req.reusedSocket && !answered });
      }
      req.on('error', fail);
      req.end(form);
    });
  }
}
