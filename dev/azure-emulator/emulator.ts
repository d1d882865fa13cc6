/**
 * The local Azure emulator: ARM + Azure AD over HTTPS (a per-run CA) and IMDS over plain HTTP, in-process.
 * See README.md for the seeding model and how to run it on its own (main.ts).
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { aadRoutes } from './aad.js';
import { authorizationRoutes } from './arm/authorization.js';
import type { ArmDeps, ArmSettings } from './arm/common.js';
import { computeRoutes } from './arm/compute.js';
import { containerServiceRoutes } from './arm/containerservice.js';
import { metadataRoutes } from './arm/metadata.js';
import { identityRoutes } from './arm/identities.js';
import { resourceRoutes } from './arm/resources.js';
import { FaultInjector, type FaultRule } from './faults.js';
import { imdsRoutes, lenientImdsPath } from './imds.js';
import { IssuerTrust } from './issuers.js';
import { RequestLog, type RequestLogEntry } from './request-log.js';
import { armError, Router, type RequestContext } from './router.js';
import { createSeeder, createViews, type Seeder, type StateViews } from './seed.js';
import { AzureState } from './state.js';
import { ensureCa, issueServerCertificate, makeTempDir, removeDir } from './tls.js';
import { ARM_AUDIENCES, TokenSigner, type AccessTokenRequest, type IssuedToken } from './tokens.js';

export type { FaultRule, FaultMatch } from './faults.js';
export type { RequestLogEntry } from './request-log.js';
export type { RouteName } from './routes.js';
export type * from './seed.js';
export type { TrustIssuerOptions, IssuerFetchOptions } from './issuers.js';

export interface EmulatorOptions {
  tenantId?: string;
  subscriptionId?: string;
  /** Address of the HTTPS (ARM + Azure AD) listener; default 127.0.0.1. */
  host?: string;
  /** More IPs/hostnames for the server certificate; IPs are also listened on (same port), for ARM and IMDS. */
  extraHosts?: string[];
  /** A principal younger than this gets 400 PrincipalNotFound from role assignment PUT; default 0. */
  principalReplicationDelayMs?: number;
  /** IMDS listener address; default 127.0.0.1 ('0.0.0.0' allowed). */
  imdsHost?: string;
  /** Access token lifetime; default 3600. */
  tokenLifetimeSeconds?: number;
  /** Reuse (or create and keep) `ca.pem` + `ca-key.pem` here; default env POD_IDENTITY_EMULATOR_CA_DIR, else a temp dir. */
  caDir?: string;
  /** Fixed ports (default: any free port). */
  armPort?: number;
  imdsPort?: number;
  /** Items per ARM list page before a `nextLink`; default 100. */
  pageSize?: number;
  /** How long one federated-credential write holds its identity's write lock; default 50. */
  ficWriteWindowMs?: number;
  /** How long a scale-set PATCH reports InProgress; default 0 (Succeeded at the first poll). */
  lroDurationMs?: number;
  /**
   * How long Azure AD answers AADSTS70021 for a new or changed federated credential; default 0 (accepted at
   * once). Runtime-adjustable through `settings.ficPropagationDelayMs`.
   */
  ficPropagationDelayMs?: number;
}

export interface FaultControl {
  /** Adds a rule; returns its id. */
  set(rule: FaultRule): number;
  remove(id: number): void;
  clear(): void;
  list(): FaultRule[];
}

export interface RequestControl {
  log(): RequestLogEntry[];
  /** Keyed `"METHOD route"`, e.g. `"PUT identities.put"`. */
  counts(): Record<string, number>;
  /** Requests to one route, any method. */
  count(route: string): number;
  reset(): void;
}

export interface AzureEmulator {
  armEndpoint: string;
  authorityHost: string;
  imdsEndpoint: string;
  tenantId: string;
  subscriptionId: string;
  caPem: string;
  caCertPath: string;
  /** Makes this process's TLS trust the emulator's CA (NODE_EXTRA_CA_CERTS is for child processes). */
  trustInProcess(): void;
  seed: Seeder;
  state: StateViews;
  faults: FaultControl;
  requests: RequestControl;
  /** Mints an access token signed by the emulator (tests: expired tokens, custom audiences). */
  issueToken(request: AccessTokenRequest): Promise<IssuedToken>;
  /** The emulator's token-signing JWKS. */
  jwks(): { keys: object[] };
  /** Count of discovery/JWKS fetches made for federated issuers (to check caching). */
  issuerFetches(): number;
  /** Adjust behaviour at runtime. */
  settings: ArmSettings;
  stop(): Promise<void>;
}

export async function startAzureEmulator(options: EmulatorOptions = {}): Promise<AzureEmulator> {
  const tenantId = (options.tenantId ?? randomUUID()).toLowerCase();
  const subscriptionId = (options.subscriptionId ?? randomUUID()).toLowerCase();
  const host = options.host ?? '127.0.0.1';
  const imdsHost = options.imdsHost ?? '127.0.0.1';
  const extraHosts = options.extraHosts ?? [];
  const workDir = await makeTempDir('azure-emulator-');
  const servers: Server[] = [];
  const stopping = new AbortController();
  try {
    const caDir = options.caDir ?? process.env['POD_IDENTITY_EMULATOR_CA_DIR'] ?? workDir;
    const [ca, signer] = await Promise.all([ensureCa(caDir), TokenSigner.create(tenantId, options.tokenLifetimeSeconds ?? 3600)]);
    const sanHosts = ['127.0.0.1', 'localhost', '::1', host, ...extraHosts, ...(imdsHost === '0.0.0.0' ? [] : [imdsHost])];
    const cert = await issueServerCertificate(ca, sanHosts, workDir);

    const state = new AzureState(tenantId, subscriptionId);
    const settings: ArmSettings = {
      pageSize: options.pageSize ?? 100,
      ficWriteWindowMs: options.ficWriteWindowMs ?? 50,
      principalReplicationDelayMs: options.principalReplicationDelayMs ?? 0,
      lroDurationMs: options.lroDurationMs ?? 0,
      ficPropagationDelayMs: options.ficPropagationDelayMs ?? 0,
    };
    const deps: ArmDeps = { state, settings, stopping: stopping.signal };
    const issuers = new IssuerTrust();
    const faults = new FaultInjector();
    const log = new RequestLog();
    let armEndpoint = '';

    const beforeArm = async (ctx: RequestContext): Promise<void> => {
      const header = ctx.req.headers.authorization ?? '';
      const challenge = (error: string, description: string) => ({
        'WWW-Authenticate': `Bearer authorization_uri="${armEndpoint}/${tenantId}", error="${error}", error_description="${description}"`,
      });
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      if (!m?.[1]) {
        throw armError(401, 'AuthenticationFailed', "Authentication failed. The 'Authorization' header is missing.", challenge('invalid_token', 'The authentication failed because of missing Authorization header.'));
      }
      const check = await signer.verifyBearer(m[1], [...ARM_AUDIENCES, armEndpoint, `${armEndpoint}/`]);
      if (!check.ok) throw armError(401, check.code, check.message, challenge('invalid_token', check.message.replace(/"/g, "'")));
      ctx.caller = { principalId: String(check.claims['oid']).toLowerCase(), clientId: String(check.claims['appid'] ?? '') };
      if (!ctx.query.get('api-version')) {
        throw armError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
      }
    };

    const https = new Router({ beforeArm, faults, log, stopping: stopping.signal, defaultFamily: 'arm' }).add(
      ...aadRoutes({ state, signer, issuers, settings }),
      ...resourceRoutes(deps),
      ...identityRoutes(deps),
      ...authorizationRoutes(deps),
      ...computeRoutes(deps),
      ...containerServiceRoutes(deps),
      ...metadataRoutes(),
    );
    const imds = new Router({ beforeArm, faults, log, stopping: stopping.signal, defaultFamily: 'imds', normalisePath: lenientImdsPath }).add(...imdsRoutes({ state, signer }));

    const listen = (server: Server, address: string, port: number) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, address, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    const extraIps = extraHosts.filter((h) => isIP(h) && h !== host);

    const armServer = createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, https.listener);
    servers.push(armServer);
    const armPort = await listen(armServer, host, options.armPort ?? 0);
    for (const ip of extraIps) {
      const extra = createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, https.listener);
      servers.push(extra);
      await listen(extra, ip, armPort);
    }
    const imdsServer = createHttpServer(imds.listener);
    servers.push(imdsServer);
    const imdsPort = await listen(imdsServer, imdsHost, options.imdsPort ?? 0);
    if (imdsHost !== '0.0.0.0' && imdsHost !== '::') {
      for (const ip of extraIps.filter((i) => i !== imdsHost)) {
        const extra = createHttpServer(imds.listener);
        servers.push(extra);
        await listen(extra, ip, imdsPort);
      }
    }
    const urlHost = (h: string) => (isIP(h) === 6 ? `[${h}]` : h);
    armEndpoint = `https://${urlHost(host)}:${armPort}`;
    const imdsAdvertised = imdsHost === '0.0.0.0' ? '127.0.0.1' : imdsHost === '::' ? '::1' : imdsHost;
    let stopped: Promise<void> | undefined;

    return {
      armEndpoint,
      authorityHost: armEndpoint,
      imdsEndpoint: `http://${urlHost(imdsAdvertised)}:${imdsPort}`,
      tenantId,
      subscriptionId,
      caPem: ca.certPem,
      caCertPath: ca.certPath,
      trustInProcess() {
        const current = tls.getCACertificates('default');
        if (!current.includes(ca.certPem)) tls.setDefaultCACertificates([...current, ca.certPem]);
      },
      seed: createSeeder(deps, issuers),
      state: createViews(state),
      faults: {
        set: (rule) => faults.set(rule),
        remove: (id) => faults.remove(id),
        clear: () => faults.clear(),
        list: () => faults.list(),
      },
      requests: {
        log: () => log.log(),
        counts: () => log.counts(),
        count: (route) => log.count(route),
        reset: () => log.reset(),
      },
      issueToken: (req) => signer.issue(req),
      jwks: () => signer.jwks(),
      issuerFetches: () => issuers.fetches,
      settings,
      stop() {
        stopped ??= (async () => {
          stopping.abort();
          await closeAll(servers);
          await removeDir(workDir);
        })();
        return stopped;
      },
    };
  } catch (err) {
    stopping.abort();
    await closeAll(servers);
    await removeDir(workDir);
    throw err;
  }
}

async function closeAll(servers: Server[]): Promise<void> {
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          if (!server.listening) return resolve();
          server.close(() => resolve());
          server.closeAllConnections(); // includes hanging requests and idle keep-alive sockets
        }),
    ),
  );
}
