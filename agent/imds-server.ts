import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { normaliseAddress } from './attribution/attributor.js';
import { refuseTunnels } from './handler.js';
import type { RejectionReason } from './metrics.js';

export interface ConnectionLimits {
  /** Open connections in total; the kernel's accept queue holds the rest until Node closes them. */
  maxConnections: number;
  /** Open connections from one source address. */
  maxConnectionsPerSource: number;
  /** Time a client has to send its request headers, and its whole request. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
}

export interface ImdsServerHooks {
  /** A connection that passed the caps (attribution records when it opened). */
  onConnection?: (socket: Socket) => void;
  onRejected?: (reason: RejectionReason) => void;
  onOpenConnections?: (open: number) => void;
}

/** IMDS headers are a few hundred bytes; real clients never come near this. */
const MAX_HEADER_BYTES = 8 * 1024;

/**
 * The IMDS listener, bounded so slow or numerous connections cannot exhaust the agent: a cap in total and per
 * source address (a pod cannot take every slot), a deadline for the headers and for the whole request
 * (slowloris), checked every second rather than Node's default 30 s, a short keep-alive, small headers.
 */
export function createImdsServer(handler: (req: IncomingMessage, res: ServerResponse) => void, limits: ConnectionLimits, hooks: ImdsServerHooks = {}): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    handler,
  );
  server.maxConnections = limits.maxConnections;
  refuseTunnels(server);
  const perSource = new Map<string, number>();
  let open = 0;
  server.on('drop', () => hooks.onRejected?.('connections_total'));
  server.on('connection', (socket: Socket) => {
    const source = normaliseAddress(socket.remoteAddress);
    const mine = (perSource.get(source) ?? 0) + 1;
    if (mine > limits.maxConnectionsPerSource) {
      hooks.onRejected?.('connections_per_source');
      socket.destroy();
      return;
    }
    perSource.set(source, mine);
    hooks.onOpenConnections?.(++open);
    socket.once('close', () => {
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
      hooks.onOpenConnections?.(--open);
    });
    hooks.onConnection?.(socket);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    if (status === 408) hooks.onRejected?.('request_timeout');
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const body = JSON.stringify({ error: 'invalid_request', error_description: status === 408 ? 'Request timed out' : status === 431 ? 'Request headers too large' : 'Malformed HTTP request' });
    // Then closed outright: a client that never reads must not keep a half-closed socket here.
    socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`, () => socket.destroy());
  });
  return server;
}
