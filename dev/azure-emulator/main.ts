/**
 * Runs the Azure emulator as a standalone process:
 *
 *   node --import tsx dev/azure-emulator/main.ts [--seed seed.json] [--tenant-id ID] [--subscription-id ID]
 *        [--host 127.0.0.1] [--extra-host IP]... [--imds-host 127.0.0.1] [--arm-port N] [--imds-port N]
 *        [--admin-port N] [--ca-dir DIR] [--principal-replication-delay-ms N] [--fic-propagation-delay-ms N]
 *        [--token-lifetime-seconds N]
 *        [--operator-client-id ID --operator-client-secret S]
 *
 * Prints one JSON line on stdout: {armEndpoint, authorityHost, imdsEndpoint, adminEndpoint, tenantId,
 * subscriptionId, caCertPath, pid, operator?}. Stops on SIGTERM/SIGINT.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { startAdminServer } from './admin.js';
import { startAzureEmulator, type EmulatorOptions } from './emulator.js';
import { applySeedFile, type SeedFile } from './seed-file.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    'tenant-id': { type: 'string' },
    'subscription-id': { type: 'string' },
    host: { type: 'string' },
    'extra-host': { type: 'string', multiple: true },
    'imds-host': { type: 'string' },
    'arm-port': { type: 'string' },
    'imds-port': { type: 'string' },
    'admin-port': { type: 'string' },
    'ca-dir': { type: 'string' },
    'principal-replication-delay-ms': { type: 'string' },
    'fic-propagation-delay-ms': { type: 'string' },
    'token-lifetime-seconds': { type: 'string' },
    'operator-client-id': { type: 'string' },
    'operator-client-secret': { type: 'string' },
  },
  strict: true,
});

const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const options: EmulatorOptions = Object.fromEntries(
  Object.entries({
    tenantId: values['tenant-id'],
    subscriptionId: values['subscription-id'],
    host: values.host,
    extraHosts: values['extra-host'],
    imdsHost: values['imds-host'],
    armPort: num(values['arm-port']),
    imdsPort: num(values['imds-port']),
    caDir: values['ca-dir'],
    principalReplicationDelayMs: num(values['principal-replication-delay-ms']),
    ficPropagationDelayMs: num(values['fic-propagation-delay-ms']),
    tokenLifetimeSeconds: num(values['token-lifetime-seconds']),
  }).filter(([, v]) => v !== undefined),
);

const emu = await startAzureEmulator(options);
const admin = await startAdminServer(emu, { ...(values['admin-port'] ? { port: Number(values['admin-port']) } : {}) });
let operator: { clientId: string; principalId: string } | undefined;
try {
  if (values.seed) applySeedFile(emu, JSON.parse(await readFile(values.seed, 'utf8')) as SeedFile);
  if (values['operator-client-id'] && values['operator-client-secret']) {
    operator = emu.seed.servicePrincipal({ clientId: values['operator-client-id'], clientSecret: values['operator-client-secret'] });
  }
} catch (err) {
  process.stderr.write(`azure emulator: seeding failed: ${(err as Error).message}\n`);
  await admin.stop();
  await emu.stop();
  process.exit(2);
}

process.stdout.write(
  `${JSON.stringify({
    armEndpoint: emu.armEndpoint,
    authorityHost: emu.authorityHost,
    imdsEndpoint: emu.imdsEndpoint,
    adminEndpoint: admin.url,
    tenantId: emu.tenantId,
    subscriptionId: emu.subscriptionId,
    caCertPath: emu.caCertPath,
    pid: process.pid,
    ...(operator ? { operator } : {}),
  })}\n`,
);

let stopping = false;
const shutdown = () => {
  if (stopping) return;
  stopping = true;
  void Promise.all([admin.stop(), emu.stop()]).then(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
