/**
 * Baseline V of P6: the bare server B plus exactly what keeps the attribution guarantee, and nothing else of the
 * agent. It confirms each new connection with the agent's own Attributor and pod directory (the nominee from the
 * node's pod informer, a consistent GET of it started after the accept, shared with the connections accepted
 * before the read began), then answers B's constant body. No identity selection, cache, issuance, metrics or
 * audit. Its throughput is the most that any server keeping the guarantee gets on this machine, so A/V is the
 * agent's own cost and V/B the guarantee's.
 *
 *   node dev/bench/verify-floor-server.js <port> <body-file> <node-name> [--kubeconfig=<path>]
 * In-cluster configuration is used when the environment has it (the bench starts V like the agent).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Attributor } from '../../agent/attribution/attributor.js';
import { KubePodDirectory } from '../../agent/attribution/kube.js';
import type { IdentityDirectory } from '../../agent/attribution/types.js';
import { connectApiServer } from '../../lib/k8s/kubeconfig.js';
import { createLogger } from '../../lib/log.js';

const [portArg, bodyFile, nodeName, kubeconfigFlag] = process.argv.slice(2);
const body = readFileSync(bodyFile ?? '');
const headers = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(body.length) };
const logger = createLogger('verify-floor', 'warn');

/** Attribution never reads PodIdentities; only the handler's selection does. */
const noIdentities: IdentityDirectory = { inNamespace: () => [], nextChange: () => new Promise(() => undefined), hasSynced: () => true, isFresh: () => true };

const { api } = await connectApiServer(kubeconfigFlag?.replace(/^--kubeconfig=/, ''));
const pods = new KubePodDirectory(api, nodeName ?? '', 1000, logger);
const watching = new AbortController();
pods.informer.start(watching.signal);
await pods.informer.waitForSync();
const attributor = new Attributor(nodeName ?? '', pods, noIdentities);

const server = createServer((req, res) => {
  if (req.url === '/healthz') return void res.writeHead(200).end('ok');
  attributor.attribute(req.socket).then(
    (who) => {
      if (who.kind === 'pod') {
        res.writeHead(200, headers);
        res.end(body);
      } else {
        res.writeHead(400).end();
      }
    },
    () => res.writeHead(503).end(),
  );
});
server.on('connection', (socket) => attributor.connectionOpened(socket));
// The same keep-alive setting as the agent's IMDS listener and B.
server.keepAliveTimeout = 5_000;
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write(`listening ${portArg}\n`));
process.once('SIGTERM', () => {
  watching.abort();
  server.close(() => process.exit(0));
});
