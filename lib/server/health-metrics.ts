import { http } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthMetricsOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** Liveness: the event loop answers. Override to add checks. */
  healthy?: () => boolean;
  /** Readiness: what keeps the program from serving yet, one line each; empty means ready. */
  notReady: () => string[];
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

/** `/healthz` (and `/livez`), `/readyz` and `/metrics` on one port: the probe and scrape contract of both programs. */
export async function startHealthMetricsServer(opts: HealthMetricsOptions): Promise<RunningServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    if (path === '/healthz' || path === '/livez') return (opts.healthy?.() ?? true) ? reply(200, 'ok\n') : reply(500, 'unhealthy\n');
    if (path === '/readyz') {
      const problems = readinessProblems(opts.notReady);
      return problems.length ? reply(503, problems.join('\n') + '\n') : reply(200, 'ok\n');
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => reply(200, text, opts.registry.contentType),
        (err: unknown) => reply(500, `metrics failed: ${(err as Error).message}\n`),
      );
      return;
    }
    reply(404, 'not found\n');
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A check that throws is a reason not to be ready, not a crashed probe. */
function readinessProblems(check: () => string[]): string[] {
  try {
    return check();
  } catch (err) {
    return [`readiness check failed: ${(err as Error)?.message ?? String(err)}`];
  }
}
