import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http } from '../lib/node-http.js';
import type { Socket } from 'node:net';
import { normaliseAddress } from './attribution/attributor.js';
import { refuseTunnels } from './handler.js';
import type { RejectionReason } from './metrics.js';

export interface ConnectionLimits {
  /** Open connections in total; the kernel's accept queue holds the rest until Node closes them. */
  maxConnections: number;
  /** Open connections from one source address. */
  maxConnectionsPerSource: number;
  /**
   * Open connections, all together, from addresses that no pod of this node claims. The listener is on the
   * node's address, so any pod of the cluster (or any host that can route to the node) can connect to it
   * directly: without this, a few of them could take every slot from this node's pods. Default:
   * `maxConnectionsPerSource` (one source's worth).
   */
  maxStrangerConnections?: number;
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
  /** True when a pod of this node claims the address (in the pod cache, any phase). Default: every address. */
  isNodePodAddress?: (address: string) => boolean;
}

/** IMDS headers are a few hundred bytes; real clients never come near this. */
const MAX_HEADER_BYTES = 8 * 1024;

/**
 * The IMDS listener, bounded so slow or numerous connections cannot exhaust the agent: a cap in total and per
 * source address (a pod cannot take every slot), a deadline for the headers and for the whole request
 * (slowloris), checked every second rather than Node's default 30 s, a short keep-alive, small headers.
 */
export function createImdsServer(handler: (req: IncomingMessage, res: ServerResponse) => void, limits: ConnectionLimits, hooks: ImdsServerHooks = {}): Server {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    handler,
  );
  const strangerCap = limits.maxStrangerConnections ?? limits.maxConnectionsPerSource;
  // The caps are counted below, on connections kept; strangers have their own pool on top, so they never take
  // a slot from this node's pods. Node's own cap is only a backstop for an accept storm: it also counts
  // connections refused a moment ago that have not closed yet, so at the exact sum it would drop a pod's
  // connection that the counts below admit.
  server.maxConnections = 2 * (limits.maxConnections + strangerCap);
  refuseTunnels(server);
  const perSource = new Map<string, number>();
  let open = 0;
  let podConnections = 0;
  let strangers = 0;
  server.on('drop', () => hooks.onRejected?.('connections_total'));
  server.on('connection', (socket: Socket) => {
    const source = normaliseAddress(socket.remoteAddress);
    const mine = (perSource.get(source) ?? 0) + 1;
    if (mine > limits.maxConnectionsPerSource) {
      hooks.onRejected?.('connections_per_source');
      socket.destroy();
      return;
    }
    const stranger = !(hooks.isNodePodAddress?.(source) ?? true);
    if (stranger ? strangers >= strangerCap : podConnections >= limits.maxConnections) {
      hooks.onRejected?.(stranger ? 'connections_strangers' : 'connections_total');
      socket.destroy();
      return;
    }
    if (stranger) strangers++;
    else podConnections++;
    perSource.set(source, mine);
    hooks.onOpenConnections?.(++open);
    socket.once('close', () => {
      if (stranger) strangers--;
      else podConnections--;
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
