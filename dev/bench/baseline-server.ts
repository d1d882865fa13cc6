/**
 * Baseline B of P1: a bare Node `http` server that answers every request with one constant JSON body (the
 * agent's own token response, byte for byte, so the size matches). The physical limit for Node on this box.
 *
 *   node --import tsx dev/bench/baseline-server.ts <port> <body-file>
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = readFileSync(process.argv[3] ?? '');
const headers = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(body.length) };

const server = createServer((_req, res) => {
  res.writeHead(200, headers);
  res.end(body);
});
// The same keep-alive setting as the agent's IMDS listener.
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
