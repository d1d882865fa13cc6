import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect, createServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { selfSignedServingCertificate } from './self-signed.js';

test('the serving certificate parses, is self-signed, names every host and serves TLS to a client that trusts only it', async () => {
  const cert = selfSignedServingCertificate('podidentity webhook', ['podidentity-webhook.podidentity-system.svc', '127.0.0.1', '::1'], 30);
  const x = new X509Certificate(cert.certPem);
  assert.ok(x.verify(x.publicKey), 'signed by its own key');
  assert.ok(x.ca);
  assert.equal(x.checkHost('podidentity-webhook.podidentity-system.svc'), 'podidentity-webhook.podidentity-system.svc');
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(x.checkIP('::1'), '::1');
  assert.equal(x.checkHost('other.svc'), undefined);
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(Math.abs(new Date(x.validTo).getTime() - cert.notAfter.getTime()) < 1000);

  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => s.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    const said = await new Promise<string>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', ca: cert.certPem, servername: 'podidentity-webhook.podidentity-system.svc' }, () => undefined);
      let data = '';
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    assert.equal(said, 'ok');
    const other = selfSignedServingCertificate('other', ['podidentity-webhook.podidentity-system.svc'], 30);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect({ port, host: '127.0.0.1', ca: other.certPem, servername: 'podidentity-webhook.podidentity-system.svc' }, () => resolve(undefined));
        s.on('error', reject);
      }),
      /self-signed|unable to verify|certificate/i,
    );
  } finally {
    server.close();
  }
});

test('a certificate needs a host', () => {
  assert.throws(() => selfSignedServingCertificate('x', [], 1), /at least one host/);
});
