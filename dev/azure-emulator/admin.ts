/**
 * The admin endpoint: plain HTTP on loopback, a separate port Azure clients never see. It exposes the
 * emulator's state views, request log, faults, settings and seeding as JSON for out-of-process tests and
 * benchmarks (admin-client.ts is its client).
 *
 *   GET    /info                                   endpoints, ids, CA path
 *   GET    /state/identities | /state/role-assignments | /state/resource-groups
 *   GET    /state/federated-credentials?identityId=…
 *   GET    /state/scale-sets/{rg}/{name}
 *   GET    /requests/log | /requests/counts        POST /requests/reset
 *   GET    /faults   POST /faults (FaultRuleJson → {id})   DELETE /faults   DELETE /faults/{id}
 *   PATCH  /settings (partial ArmSettings)
 *   POST   /seed (a SeedFile)   POST /seed/{resource-group|service-principal|identity|scale-set|managed-cluster|role-assignment|trust-issuer}
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AzureEmulator } from './emulator.js';
import { faultRuleFromJson, faultRuleToJson, type FaultRuleJson } from './faults.js';
import { applySeedFile, type SeedFile } from './seed-file.js';

export interface AdminServer {
  url: string;
  stop(): Promise<void>;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startAdminServer(emu: AzureEmulator, options: { host?: string; port?: number } = {}): Promise<AdminServer> {
  const handle = async (req: IncomingMessage, body: unknown): Promise<unknown> => {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const route = `${method} /${parts.join('/')}`;
    const obj = body as Record<string, unknown>;
    switch (true) {
      case route === 'GET /info':
        return { armEndpoint: emu.armEndpoint, authorityHost: emu.authorityHost, imdsEndpoint: emu.imdsEndpoint, tenantId: emu.tenantId, subscriptionId: emu.subscriptionId, caCertPath: emu.caCertPath };
      case route === 'GET /state/identities':
        return emu.state.identities();
      case route === 'GET /state/role-assignments':
        return emu.state.roleAssignments();
      case route === 'GET /state/resource-groups':
        return emu.state.resourceGroups();
      case route === 'GET /state/federated-credentials':
        return emu.state.federatedCredentials(url.searchParams.get('identityId') ?? '');
      case method === 'GET' && parts[0] === 'state' && parts[1] === 'scale-sets' && parts.length === 4: {
        const view = emu.state.scaleSet(parts[2] ?? '', parts[3] ?? '');
        if (!view) throw new HttpFailure(404, 'no such scale set');
        return view;
      }
      case route === 'GET /requests/log':
        return emu.requests.log();
      case route === 'GET /requests/counts':
        return emu.requests.counts();
      case route === 'POST /requests/reset':
        emu.requests.reset();
        return {};
      case route === 'GET /faults':
        return emu.faults.list().map(faultRuleToJson);
      case route === 'POST /faults':
        return { id: emu.faults.set(faultRuleFromJson(obj as FaultRuleJson)) };
      case route === 'DELETE /faults':
        emu.faults.clear();
        return {};
      case method === 'DELETE' && parts[0] === 'faults' && parts.length === 2:
        emu.faults.remove(Number(parts[1]));
        return {};
      case route === 'PATCH /settings':
        Object.assign(emu.settings, obj);
        return emu.settings;
      case route === 'POST /seed':
        return applySeedFile(emu, obj as SeedFile);
      case method === 'POST' && parts[0] === 'seed' && parts.length === 2:
        return seedOne(emu, parts[1] ?? '', obj);
      default:
        throw new HttpFailure(404, `no admin route ${route}`);
    }
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let status = 200;
        let payload: unknown;
        try {
          const text = Buffer.concat(chunks).toString('utf8');
          payload = await handle(req, text ? JSON.parse(text) : {});
        } catch (err) {
          status = err instanceof HttpFailure ? err.status : 400;
          payload = { error: (err as Error).message };
        }
        const json = JSON.stringify(payload ?? null);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function seedOne(emu: AzureEmulator, kind: string, body: Record<string, unknown>): unknown {
  const seed = emu.seed as unknown as Record<string, (arg: never, arg2?: never) => unknown>;
  switch (kind) {
    case 'resource-group':
      return emu.seed.resourceGroup(String(body['name']), body['location'] === undefined ? undefined : String(body['location']));
    case 'service-principal':
    case 'identity':
    case 'scale-set':
    case 'managed-cluster':
    case 'role-assignment':
    case 'trust-issuer': {
      const method = kind.replace(/-(\w)/g, (_m, c: string) => c.toUpperCase());
      const result = seed[method]?.(body as never);
      return result ?? {};
    }
    default:
      throw new HttpFailure(404, `unknown seed kind ${kind}`);
  }
}
