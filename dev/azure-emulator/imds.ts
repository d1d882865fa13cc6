/**
 * IMDS over plain HTTP, with the protocol of reference §5. The caller is identified only by its TCP source
 * address: the scale-set instance seeded with that IP, whose scale set's identities it may use.
 */
import { imdsError, type RequestContext, type Route } from './router.js';
import type { AzureState, ScaleSet, ScaleSetInstance } from './state.js';
import type { TokenSigner } from './tokens.js';

export interface ImdsDeps {
  state: AzureState;
  signer: TokenSigner;
}

interface Candidate {
  clientId: string;
  principalId: string;
  resourceId: string;
  system: boolean;
}

/**
 * How the emulated IMDS reads a path after decoding it (once, in the router): a backslash is a separator,
 * empty and `.` segments vanish, `..` climbs, and a name's trailing dots and spaces are dropped (as Windows
 * path handling does). This is the most lenient reading a server could make, so an agent that forwards a
 * disguised token path (`identity%2Foauth2%2Ftoken`, `metadata%5Cidentity…`, `instance%2F..%2Fidentity…`)
 * gets a token here, and one that forwards `compute/userData.` gets user data, as it could from the real
 * IMDS: the attack reproduces.
 */
export function lenientImdsPath(decoded: string): string {
  const segments: string[] = [];
  const separated = decoded.replaceAll('\\', '/');
  for (const raw of separated.split('/')) {
    // Windows path handling drops a name's trailing dots and spaces (`userData.` is `userData`).
    const segment = raw === '.' || raw === '..' ? raw : raw.replace(/[. ]+$/, '');
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  // The trailing slash msal-node adds is kept, so the request log shows what clients send.
  return `/${segments.join('/')}${segments.length && separated.endsWith('/') ? '/' : ''}`;
}

const MULTIPLE = 'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request';

function common(ctx: RequestContext): void {
  if (ctx.req.headers['x-forwarded-for'] !== undefined) {
    throw imdsError(400, 'invalid_request', 'Request contains X-Forwarded-For header');
  }
  if (String(ctx.req.headers['metadata'] ?? '').toLowerCase() !== 'true') {
    throw imdsError(400, 'invalid_request', 'Required metadata header not specified');
  }
  const names = [...ctx.query.keys()];
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw imdsError(400, 'invalid_request', `Query parameter '${repeated}' is specified more than once`);
  const apiVersion = ctx.query.get('api-version');
  if (!apiVersion) throw imdsError(400, 'invalid_request', "Required query variable 'api-version' is missing");
  if (!/^\d{4}-\d{2}-\d{2}$/.test(apiVersion) || apiVersion < '2017-03-01') throw imdsError(400, 'invalid_request', 'Invalid version');
}

function callerInstance(deps: ImdsDeps, ctx: RequestContext): { scaleSet: ScaleSet; instance: ScaleSetInstance } {
  const found = deps.state.instanceByIp(ctx.remoteAddress);
  if (!found) throw imdsError(400, 'invalid_request', 'Identity not found');
  return found;
}

export function imdsRoutes(deps: ImdsDeps): Route[] {
  const { state, signer } = deps;
  return [
    {
      name: 'imds.token',
      method: 'GET',
      family: 'imds',
      pattern: /^\/metadata\/identity\/oauth2\/token\/?$/i,
      async handle(ctx) {
        common(ctx);
        if (ctx.query.get('api-version')! < '2018-02-01') throw imdsError(400, 'invalid_request', 'Invalid version');
        const resource = ctx.query.get('resource');
        if (!resource) throw imdsError(400, 'invalid_request', 'Required audience parameter not specified');
        const clientId = ctx.query.get('client_id');
        const objectId = ctx.query.get('object_id');
        const resId = ctx.query.get('msi_res_id') ?? ctx.query.get('mi_res_id');
        const hints = [clientId, objectId, ctx.query.get('msi_res_id'), ctx.query.get('mi_res_id')].filter((h) => h !== null);
        if (hints.length > 1) throw imdsError(400, 'invalid_request', 'Only one of client_id, object_id or msi_res_id may be specified');
        const { scaleSet } = callerInstance(deps, ctx);
        const candidates: Candidate[] = [];
        if (scaleSet.systemAssigned) {
          candidates.push({ clientId: scaleSet.systemAssigned.clientId, principalId: scaleSet.systemAssigned.principalId, resourceId: scaleSet.id, system: true });
        }
        for (const ref of scaleSet.userAssigned.values()) {
          const identity = state.identity(ref.id);
          if (identity) candidates.push({ clientId: identity.clientId, principalId: identity.principalId, resourceId: identity.id, system: false });
        }
        let chosen: Candidate | undefined;
        if (clientId !== null) chosen = candidates.find((c) => c.clientId === clientId.toLowerCase());
        else if (objectId !== null) chosen = candidates.find((c) => c.principalId === objectId.toLowerCase());
        else if (resId !== null) chosen = candidates.find((c) => !c.system && c.resourceId.toLowerCase() === resId.toLowerCase());
        else {
          chosen = candidates.find((c) => c.system);
          if (!chosen) {
            if (candidates.length > 1) throw imdsError(400, 'invalid_request', MULTIPLE);
            chosen = candidates[0];
          }
        }
        if (!chosen) throw imdsError(400, 'invalid_request', 'Identity not found');
        const issued = await signer.issue({
          resource,
          principalId: chosen.principalId,
          clientId: chosen.clientId,
          miResourceId: chosen.resourceId,
        });
        const expiresIn = String(issued.expiresOn - Math.floor(Date.now() / 1000));
        return {
          status: 200,
          body: {
            access_token: issued.token,
            client_id: chosen.clientId,
            expires_in: expiresIn,
            expires_on: String(issued.expiresOn),
            ext_expires_in: expiresIn,
            not_before: String(issued.notBefore),
            refresh_token: '',
            resource,
            token_type: 'Bearer',
            ...(objectId !== null ? { object_id: objectId } : {}),
            ...(resId !== null ? { msi_res_id: resId } : {}),
          },
        };
      },
    },
    {
      name: 'imds.instance',
      method: 'GET',
      family: 'imds',
      pattern: /^\/metadata\/instance(\/.*)?$/i,
      handle(ctx) {
        common(ctx);
        const { scaleSet, instance } = callerInstance(deps, ctx);
        const doc = {
          compute: {
            azEnvironment: 'AzurePublicCloud',
            location: scaleSet.location,
            name: `${scaleSet.name}_${instance.instanceId}`,
            osType: 'Linux',
            resourceGroupName: scaleSet.resourceGroup,
            resourceId: `${scaleSet.id}/virtualMachines/${instance.instanceId}`,
            subscriptionId: state.subscriptionId,
            vmId: scaleSet.uniqueId,
            vmScaleSetName: scaleSet.name,
            vmSize: 'Standard_D2s_v3',
            osProfile: { computerName: instance.nodeName },
            tagsList: [],
            // Real IMDS returns the VM's user data in the compute document; it can hold secrets.
            userData: Buffer.from(`user data of ${instance.nodeName}`).toString('base64'),
          },
          network: { interface: [{ ipv4: { ipAddress: [{ privateIpAddress: instance.ip, publicIpAddress: '' }], subnet: [] }, ipv6: { ipAddress: [] }, macAddress: '000D3A000000' }] },
        };
        let node: unknown = doc;
        for (const segment of (ctx.params[0] ?? '').split('/').filter(Boolean)) {
          node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[Array.isArray(node) ? Number(segment) : segment] : undefined;
          if (node === undefined) throw imdsError(404, 'not_found', `Path ${ctx.path} not found`);
        }
        if (ctx.query.get('format') === 'text' && typeof node !== 'object') {
          return { status: 200, body: String(node), headers: { 'content-type': 'text/plain; charset=utf-8' } };
        }
        return { status: 200, body: typeof node === 'string' ? JSON.stringify(node) : node };
      },
    },
  ];
}
