import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../lib/log.js';
import type { AdmissionRequest, Decision, TokenRequestPolicy } from './token-request-policy.js';

export const WEBHOOK_PATH = '/validate-agent-token-requests';
/** An AdmissionReview for a TokenRequest is a few KB. */
const MAX_BODY_BYTES = 256 * 1024;

export interface WebhookServerOptions {
  port: number;
  host?: string;
  certPem: string;
  keyPem: string;
  policy: TokenRequestPolicy;
  logger: Logger;
  /** Counts decisions by outcome (allowed, denied, unavailable, bad_request). */
  onDecision?: (outcome: string) => void;
}

export interface WebhookServer {
  port: number;
  /** Serves new connections with another certificate (rotation). */
  setCertificate(certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

function review(uid: string, decision: Decision): string {
  const response = decision.allowed ? { uid, allowed: true } : { uid, allowed: false, status: { code: decision.code, message: decision.message, reason: decision.code === 403 ? 'Forbidden' : 'ServiceUnavailable' } };
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
}

/** The HTTPS endpoint the API server calls with an AdmissionReview (admission.k8s.io/v1) per TokenRequest. */
export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const server = https.createServer({ cert: opts.certPem, key: opts.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    const reply = (code: number, body: string, type = 'application/json') => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (path !== WEBHOOK_PATH) return reply(404, 'not found\n', 'text/plain');
    if (req.method !== 'POST') return reply(405, 'method not allowed\n', 'text/plain');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        opts.onDecision?.('bad_request');
        reply(413, 'AdmissionReview too large\n', 'text/plain');
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let request: AdmissionRequest | undefined;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { kind?: string; request?: AdmissionRequest };
        if (body.kind === 'AdmissionReview' && typeof body.request?.uid === 'string') request = body.request;
      } catch {
        /* answered below */
      }
      // Without a request uid there is nothing to answer; the API server treats the 400 as a failed call
      // and, with failurePolicy Fail, refuses the TokenRequest.
      if (!request) {
        opts.onDecision?.('bad_request');
        return reply(400, 'expected an admission.k8s.io/v1 AdmissionReview with a request\n', 'text/plain');
      }
      const req0 = request;
      opts.policy.decide(req0).then(
        (decision) => {
          opts.onDecision?.(decision.allowed ? 'allowed' : decision.code === 403 ? 'denied' : 'unavailable');
          if (!decision.allowed) {
            opts.logger.warn('agent TokenRequest refused', { user: req0.userInfo?.username, namespace: req0.namespace, serviceAccount: req0.name, code: decision.code, reason: decision.message });
          }
          reply(200, review(req0.uid, decision));
        },
        (err: unknown) => {
          opts.onDecision?.('unavailable');
          reply(200, review(req0.uid, { allowed: false, code: 503, message: `the pod identity webhook failed: ${(err as Error).message}` }));
        },
      );
    });
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    setCertificate: (certPem, keyPem) => server.setSecureContext({ cert: certPem, key: keyPem, minVersion: 'TLSv1.2' }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
