/** The emulator starts in well under a second, stops cleanly, reuses a CA, and runs standalone (main.ts + admin). */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AdminClient } from './admin-client.js';
import { startAzureEmulator } from './emulator.js';
import { startProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { ensureCa, makeTempDir, removeDir } from './tls.js';
import { rawRequest } from './test-fixture.js';

const canConnect = (url: string) =>
  new Promise<boolean>((resolve) => {
    const u = new URL(url);
    const socket = connect(Number(u.port), u.hostname);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('emulator lifecycle', () => {
  it('starts in well under a second and stops everything, including hanging requests', async () => {
    await (await startAzureEmulator()).stop(); // warm module loading so the measurement is the emulator's own
    const started = performance.now();
    const emu = await startAzureEmulator();
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1000, `startup took ${elapsed.toFixed(0)} ms`);
    console.log(`emulator startup: ${elapsed.toFixed(0)} ms`);
    assert.match(emu.armEndpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(emu.imdsEndpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(existsSync(emu.caCertPath));
    emu.faults.set({ hang: true });
    const hanging = rawRequest(`${emu.imdsEndpoint}/metadata/identity/oauth2/token`).catch((err: Error) => err);
    await waitFor('the hanging request to be logged', () => emu.requests.log().length === 1);
    await emu.stop();
    assert.ok((await hanging) instanceof Error, 'the hanging socket was closed');
    assert.equal(await canConnect(emu.armEndpoint), false);
    assert.equal(await canConnect(emu.imdsEndpoint), false);
    assert.equal(existsSync(emu.caCertPath), false, 'temp CA removed');
  });

  it('reuses an existing CA from caDir and leaves it in place', async () => {
    const dir = await makeTempDir('emu-ca-');
    try {
      const ca = await ensureCa(dir);
      const emu = await startAzureEmulator({ caDir: dir });
      assert.equal(emu.caCertPath, join(dir, 'ca.pem'));
      assert.equal(emu.caPem, ca.certPem);
      const res = await rawRequest(`${emu.authorityHost}/${emu.tenantId}/v2.0/.well-known/openid-configuration`, { ca: ca.certPem });
      assert.equal(res.status, 200);
      await emu.stop();
      assert.ok(existsSync(join(dir, 'ca.pem')));
    } finally {
      await removeDir(dir);
    }
  });

  it('runs standalone: main.ts seeds from a file, prints its endpoints, serves the admin API, stops on SIGTERM', async () => {
    const dir = await makeTempDir('emu-cli-');
    try {
      const seedPath = join(dir, 'seed.json');
      await writeFile(
        seedPath,
        JSON.stringify({
          resourceGroups: [{ name: 'rg-cli', location: 'westus2' }],
          servicePrincipals: [{ clientId: '11111111-2222-3333-4444-555555555555', clientSecret: 's3cret' }],
          scaleSets: [{ resourceGroup: 'mc_rg', name: 'pool', instances: [{ nodeName: 'node-0', ip: '127.0.0.21' }] }],
          identities: [{ resourceGroup: 'rg-cli', name: 'cli-id' }],
        }),
      );
      const main = fileURLToPath(new URL('./main.ts', import.meta.url));
      const proc = startProcess('azure-emulator', process.execPath, ['--import', 'tsx', main, '--seed', seedPath]);
      const info = await waitFor('the emulator to print its endpoints', () => {
        const line = proc.output().split('\n').find((l) => l.startsWith('{'));
        return line ? (JSON.parse(line) as { adminEndpoint: string; armEndpoint: string; caCertPath: string; tenantId: string }) : undefined;
      });
      const admin = new AdminClient(info.adminEndpoint);
      assert.equal((await admin.info()).armEndpoint, info.armEndpoint);
      assert.deepEqual((await admin.state.identities()).map((i) => i.name), ['cli-id']);
      assert.equal((await admin.state.scaleSet('mc_rg', 'pool')).instances[0]?.ip, '127.0.0.21');
      await admin.seed.identity({ resourceGroup: 'rg-cli', name: 'later-id' });
      assert.equal((await admin.state.identities()).length, 2);

      // An Azure client of the standalone process, trusting its CA file.
      const { readFile } = await import('node:fs/promises');
      const ca = await readFile(info.caCertPath, 'utf8');
      const tokenUrl = `${info.armEndpoint}/${info.tenantId}/oauth2/v2.0/token`;
      const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: '11111111-2222-3333-4444-555555555555', client_secret: 's3cret', scope: 'https://management.azure.com/.default' }).toString();
      await admin.faults.set({ match: { route: 'aad.token' }, status: 503, retryAfterSeconds: 2, times: 1 });
      const faulted = await rawRequest(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form, ca });
      assert.equal(faulted.status, 503);
      assert.equal(faulted.headers['retry-after'], '2');
      const ok = await rawRequest(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form, ca });
      assert.equal(ok.status, 200);
      assert.equal((await admin.requests.counts())['POST aad.token'], 2);
      await admin.requests.reset();
      assert.deepEqual(await admin.requests.counts(), {});

      await proc.stop();
      assert.equal(await proc.exited, 0);
    } finally {
      await removeDir(dir);
    }
  });
});
