/**
 * Per-run certificate authority and server certificate for the emulator's HTTPS endpoint, made with the
 * `openssl` CLI (EC P-256 keys: fast to generate, accepted by Node's TLS and by every Azure SDK).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateAuthority {
  certPath: string;
  keyPath: string;
  certPem: string;
  /** True when this call created the CA (false when an existing one was reused). */
  created: boolean;
}

/**
 * Reuses `dir/ca.pem` + `dir/ca-key.pem` when both exist; otherwise creates them there. A parent process
 * can call this before starting children so it can set NODE_EXTRA_CA_CERTS=`dir/ca.pem` for them, then
 * pass the same dir as `caDir` to the emulator.
 */
export async function ensureCa(dir: string): Promise<CertificateAuthority> {
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca-key.pem');
  let created = false;
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    await mkdir(dir, { recursive: true });
    await run('openssl', [
      'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=pod-identity azure emulator CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    created = true;
  }
  return { certPath, keyPath, certPem: await readFile(certPath, 'utf8'), created };
}

export interface ServerCertificate {
  certPem: string;
  keyPem: string;
}

/** A leaf certificate for `hosts` (IPs and DNS names go into the SAN), signed by `ca`. */
export async function issueServerCertificate(ca: CertificateAuthority, hosts: string[], workDir: string): Promise<ServerCertificate> {
  const san = [...new Set(hosts)].map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const keyPath = join(workDir, 'server-key.pem');
  const certPath = join(workDir, 'server.pem');
  const extPath = join(workDir, 'server.ext');
  await writeFile(extPath, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
  const csrPath = join(workDir, 'server.csr');
  await run('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', csrPath, '-subj', '/CN=azure emulator',
  ]);
  await run('openssl', [
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-CAcreateserial',
    '-CAserial', join(workDir, 'ca.srl'), '-out', certPath, '-days', '2', '-extfile', extPath,
  ]);
  return { certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
