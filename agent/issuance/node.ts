import type { IssuedToken } from '../imds/protocol.js';
import type { AgentMetrics } from '../metrics.js';
import { boundedRetryAfter } from './retry-after.js';
import { timed, UpstreamError, type Issuer, type IssueRequest } from './types.js';
import { callNodeImds, type ImdsAnswer } from './upstream.js';

export interface NodeIssuerOptions {
  /** The node's real IMDS, e.g. http://169.254.169.254. */
  upstreamImds: string;
  metrics: AgentMetrics;
  timeoutMs: number;
}

/**
 * Node mode: the identity is assigned to this node's scale set (by the operator), so the node's own IMDS
 * issues it when asked by client_id. The agent's calls are exempt from interception (they don't pass
 * PREROUTING, and the OUTPUT opt-in excludes the agent's uid/gid).
 */
export class NodeIssuer implements Issuer {
  constructor(private readonly options: NodeIssuerOptions) {}

  async issue({ identity, resource, upstream }: IssueRequest): Promise<IssuedToken> {
    const query = new URLSearchParams({ 'api-version': '2018-02-01', resource, client_id: identity.clientId });
    const started = performance.now();
    let res: ImdsAnswer;
    try {
      res = await timed(upstream, () => callNodeImds(this.options.upstreamImds, `/metadata/identity/oauth2/token?${query}`, this.options.timeoutMs));
    } catch (err) {
      this.observe(started, 'error');
      throw new UpstreamError('imds', 503, 'imds_unreachable', `the node IMDS did not answer: ${(err as Error).message}`, 5);
    }
    this.observe(started, String(res.status));
    const text = res.text;
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      /* described below */
    }
    if (res.status !== 200) {
      const detail = typeof body['error_description'] === 'string' ? body['error_description'] : text.slice(0, 200);
      // 400 here usually means the identity is not (yet) on this node's scale set: transient from the pod's view.
      const status = res.status === 429 ? 429 : res.status >= 500 || res.status === 400 || res.status === 404 ? 503 : 500;
      throw new UpstreamError('imds', status, String(body['error'] ?? 'imds_error'), `the node IMDS refused client_id ${identity.clientId}: ${detail}`, status === 503 || status === 429 ? boundedRetryAfter(res.retryAfter, Date.now()) : undefined);
    }
    const accessToken = body['access_token'];
    const expiresOn = Number(body['expires_on']);
    if (typeof accessToken !== 'string' || !Number.isFinite(expiresOn)) throw new UpstreamError('imds', 500, 'bad_response', 'the node IMDS answered without a token');
    const notBefore = Number(body['not_before']);
    return { accessToken, expiresOn, notBefore: Number.isFinite(notBefore) ? notBefore : Math.floor(Date.now() / 1000) };
  }

  private observe(started: number, code: string): void {
    this.options.metrics.upstreamDuration.observe({ upstream: 'imds', code }, (performance.now() - started) / 1000);
  }
}
