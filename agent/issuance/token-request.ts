import type { ApiServer } from '../../lib/k8s/api-server.js';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import { apiRequest, type ApiRequest } from '../../lib/k8s/rest.js';
import { UpstreamError } from './types.js';

/**
 * The API server's minimum; the assertion is used at once and dies with the pod anyway. The agent-token
 * admission webhook (operator/admission) refuses the agent anything longer, any other audience, and any token
 * not bound by name and uid to a pod on the agent's node: this spec is exactly what it allows.
 */
const ASSERTION_LIFETIME_SECONDS = 600;
/** A TokenRequest answer is a few KB. */
const MAX_BODY_BYTES = 1 << 20;

export interface PodServiceAccount {
  namespace: string;
  serviceAccount: string;
  podName: string;
  podUid: string;
}

/** The TokenRequest body: audience api://AzureADTokenExchange, bound to the pod so it is void once the pod is gone. */
function tokenRequestSpec(pod: PodServiceAccount) {
  return {
    audiences: [TOKEN_EXCHANGE_AUDIENCE],
    expirationSeconds: ASSERTION_LIFETIME_SECONDS,
    boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.podName, uid: pod.podUid },
  };
}

/** Seconds an IMDS caller should wait before retrying when the API server or its admission can't answer. */
const RETRY_AFTER_SECONDS = 5;

/**
 * How a failed TokenRequest is answered. Everything transient fails closed as 503 + Retry-After: the API server
 * unreachable (status 0), throttling (429), and 5xx, which is how the API server reports an admission webhook
 * it can't call (failurePolicy: Fail answers 500 "failed calling webhook"). A refusal stays a refusal: 403
 * (RBAC, or the agent-token webhook denying), 404 (the pod or its service account is gone), and 409, which is
 * how the API server refuses a token bound to a UID the pod's name no longer has: the pod that asked is gone
 * (replaced under its name), the same answer as 404.
 */
function failed(pod: PodServiceAccount, status: number, why: string): UpstreamError {
  const message = `TokenRequest for service account ${pod.namespace}/${pod.serviceAccount} failed${status ? ` (HTTP ${status})` : ''}: ${why}`;
  if (status === 0 || status === 429 || status >= 500) return new UpstreamError('kubernetes', 503, 'token_request_unavailable', message, RETRY_AFTER_SECONDS);
  if (status === 403) return new UpstreamError('kubernetes', 403, 'token_request_forbidden', message);
  return new UpstreamError('kubernetes', status === 404 || status === 409 ? 404 : 500, 'token_request_failed', message);
}

/**
 * POST serviceaccounts/<name>/token as plain JSON over the API server's keep-alive pool. A miss waits on
 * this call; client-node's typed call spends about a millisecond more per miss in its generic
 * (de)serialisation and middleware than the request itself takes on a warm connection.
 */
export async function requestServiceAccountToken(api: ApiServer, pod: PodServiceAccount, timeoutMs: number): Promise<string> {
  const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: tokenRequestSpec(pod) });
  const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/serviceaccounts/${encodeURIComponent(pod.serviceAccount)}/token`;
  let prepared: ApiRequest;
  try {
    prepared = await apiRequest(api, 'POST', path, {}, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  } catch (err) {
    throw failed(pod, 0, (err as Error).message);
  }
  const { url, transport, options: opts } = prepared;
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    let timedOut = false;
    const req = transport.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) return void req.destroy(new Error('TokenRequest answer too large'));
        chunks.push(chunk);
      });
      res.on('error', onError);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy();
    }, timeoutMs);
    timer.unref();
    function onError(err: Error): void {
      clearTimeout(timer);
      reject(timedOut ? new UpstreamError('kubernetes', 503, 'timeout', `TokenRequest not answered within ${timeoutMs} ms`, RETRY_AFTER_SECONDS) : failed(pod, 0, err.message));
    }
    req.on('error', onError);
    req.end(body);
  });
  let parsed: { status?: { token?: unknown }; message?: unknown } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    /* described below */
  }
  if (status !== 201 && status !== 200) {
    // The API server's Status message says why (missing service account, pod uid mismatch…); it holds no token.
    const why = typeof parsed.message === 'string' ? parsed.message.split('\n')[0]!.slice(0, 300) : text.slice(0, 300);
    throw failed(pod, status, why);
  }
  const token = parsed.status?.token;
  if (typeof token !== 'string' || !token) throw new UpstreamError('kubernetes', 500, 'empty_token', 'TokenRequest returned no token');
  return token;
}
