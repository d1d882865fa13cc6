/** Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials. */
import { armError, pause, type Route, type RequestContext } from '../router.js';
import type { FederatedCredential, Identity } from '../state.js';
import { asRecord, authorize, notFound, page, requireResourceGroup, requireSubscription, stringTags, type ArmDeps } from './common.js';

const TYPE = 'Microsoft.ManagedIdentity/userAssignedIdentities';
const FIC_TYPE = `${TYPE}/federatedIdentityCredentials`;
const ACTION = 'Microsoft.ManagedIdentity/userAssignedIdentities';
const FIC_ACTION = `${ACTION}/federatedIdentityCredentials`;
export const MAX_FICS_PER_IDENTITY = 20;

const RG_BASE = String.raw`^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ManagedIdentity/userAssignedIdentities`;
const IDENTITY_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$/;
const FIC_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}$/;

export function identityJson(identity: Identity, tenantId: string): Record<string, unknown> {
  return {
    id: identity.id,
    name: identity.name,
    type: TYPE,
    location: identity.location,
    tags: identity.tags,
    properties: { tenantId, principalId: identity.principalId, clientId: identity.clientId },
  };
}

export function ficJson(fic: FederatedCredential): Record<string, unknown> {
  return { id: fic.id, name: fic.name, type: FIC_TYPE, properties: { issuer: fic.issuer, subject: fic.subject, audiences: fic.audiences } };
}

export function identityRoutes(deps: ArmDeps): Route[] {
  const { state } = deps;
  /** Identities whose federated credentials are being written, with when the write window ends. */
  const writing = new Set<string>();

  const lookup = (ctx: RequestContext): Identity => {
    const [sub = '', rg = '', name = ''] = ctx.params;
    requireResourceGroup(deps, sub, rg);
    const identity = state.identity(state.identityId(rg, name));
    if (!identity) notFound(TYPE, name, rg);
    return identity;
  };

  /** Runs one federated-credential write under the identity's write lock; a second write meanwhile gets 409. */
  const ficWrite = async <T>(identity: Identity, write: () => T): Promise<T> => {
    const key = identity.id.toLowerCase();
    if (writing.has(key)) {
      throw armError(
        409,
        'ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity',
        `Too many Federated Identity Credentials are written concurrently for the managed identity '${identity.id}'. Please retry the request sequentially.`,
      );
    }
    writing.add(key);
    try {
      const result = write();
      await pause(deps.settings.ficWriteWindowMs, deps.stopping);
      return result;
    } finally {
      writing.delete(key);
    }
  };

  return [
    {
      name: 'identities.listBySubscription',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities$/i,
      handle(ctx) {
        requireSubscription(deps, ctx.params[0] ?? '');
        const caller = ctx.caller?.principalId ?? '';
        const items = [...state.identitiesById.values()].filter((i) => state.can(caller, `${ACTION}/read`, i.id));
        return page(deps, ctx, items.map((i) => identityJson(i, state.tenantId)));
      },
    },
    {
      name: 'identities.listByResourceGroup',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}$`, 'i'),
      handle(ctx) {
        const rg = requireResourceGroup(deps, ctx.params[0] ?? '', ctx.params[1] ?? '');
        const caller = ctx.caller?.principalId ?? '';
        const items = [...state.identitiesById.values()].filter(
          (i) => i.resourceGroup.toLowerCase() === rg.name.toLowerCase() && state.can(caller, `${ACTION}/read`, i.id),
        );
        return page(deps, ctx, items.map((i) => identityJson(i, state.tenantId)));
      },
    },
    {
      name: 'identities.get',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)$`, 'i'),
      handle(ctx) {
        const [, rg = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${ACTION}/read`, state.identityId(rg, name));
        return { status: 200, body: identityJson(lookup(ctx), state.tenantId) };
      },
    },
    {
      name: 'identities.put',
      method: 'PUT',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)$`, 'i'),
      handle(ctx) {
        const [sub = '', rgName = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${ACTION}/write`, state.identityId(rgName, name));
        const rg = requireResourceGroup(deps, sub, rgName);
        if (!IDENTITY_NAME.test(name)) {
          throw armError(400, 'InvalidResourceName', `Resource name '${name}' is invalid. The name can contain only letters, numbers, underscores and hyphens, must start with a letter or number, and must be 3 to 128 characters long.`);
        }
        const body = asRecord(ctx.json());
        const location = body['location'];
        if (typeof location !== 'string' || !location) throw armError(400, 'LocationRequired', 'The location property is required for this definition.');
        const tags = stringTags(body['tags']);
        const existing = state.identity(state.identityId(rg.name, name));
        if (existing) {
          if (normaliseLocation(existing.location) !== normaliseLocation(location)) {
            throw armError(400, 'InvalidResourceLocation', `The resource '${name}' already exists in location '${existing.location}' in resource group '${rg.name}'. A resource with the same name cannot be created in location '${location}'.`);
          }
          existing.tags = tags;
          return { status: 200, body: identityJson(existing, state.tenantId) };
        }
        const created = state.createIdentity(rg.name, name, location, tags);
        return { status: 201, body: identityJson(created, state.tenantId) };
      },
    },
    {
      name: 'identities.delete',
      method: 'DELETE',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)$`, 'i'),
      handle(ctx) {
        const [sub = '', rg = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${ACTION}/delete`, state.identityId(rg, name));
        requireResourceGroup(deps, sub, rg);
        return { status: state.deleteIdentity(state.identityId(rg, name)) ? 200 : 204 };
      },
    },
    {
      name: 'fic.list',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)/federatedIdentityCredentials$`, 'i'),
      handle(ctx) {
        const [, rg = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${FIC_ACTION}/read`, state.identityId(rg, name));
        const identity = lookup(ctx);
        return page(deps, ctx, [...identity.fics.values()].map(ficJson));
      },
    },
    {
      name: 'fic.get',
      method: 'GET',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)/federatedIdentityCredentials/([^/]+)$`, 'i'),
      handle(ctx) {
        const [, rg = '', name = '', ficName = ''] = ctx.params;
        authorize(deps, ctx, `${FIC_ACTION}/read`, state.identityId(rg, name));
        const fic = lookup(ctx).fics.get(ficName.toLowerCase());
        if (!fic) notFound(FIC_TYPE, `${name}/${ficName}`, rg);
        return { status: 200, body: ficJson(fic) };
      },
    },
    {
      name: 'fic.put',
      method: 'PUT',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)/federatedIdentityCredentials/([^/]+)$`, 'i'),
      async handle(ctx) {
        const [, rg = '', name = '', ficName = ''] = ctx.params;
        authorize(deps, ctx, `${FIC_ACTION}/write`, state.identityId(rg, name));
        const identity = lookup(ctx);
        const { issuer, subject, audiences } = parseFic(ctx.json(), ficName);
        return ficWrite(identity, () => {
          const key = ficName.toLowerCase();
          const existing = identity.fics.get(key);
          for (const other of identity.fics.values()) {
            if (other !== existing && other.issuer === issuer && other.subject === subject) {
              throw armError(
                400,
                'FederatedIdentityCredentialAlreadyExists',
                `A federated identity credential with issuer '${issuer}' and subject '${subject}' already exists under the managed identity '${identity.name}' (name '${other.name}').`,
              );
            }
          }
          if (!existing && identity.fics.size >= MAX_FICS_PER_IDENTITY) {
            throw armError(
              400,
              'FederatedIdentityCredentialsLimitExceeded',
              `Too many Federated Identity Credentials are registered with the managed identity '${identity.name}'. The limit is ${MAX_FICS_PER_IDENTITY}.`,
            );
          }
          // Only a write that changes what Azure AD matches on starts a new propagation; a no-op PUT does not.
          const unchanged = existing && existing.issuer === issuer && existing.subject === subject && existing.audiences.join('\n') === audiences.join('\n');
          const acceptedFrom = unchanged ? existing.acceptedFrom : Date.now() + deps.settings.ficPropagationDelayMs;
          const fic: FederatedCredential = { id: `${identity.id}/federatedIdentityCredentials/${existing?.name ?? ficName}`, name: existing?.name ?? ficName, issuer, subject, audiences, acceptedFrom };
          identity.fics.set(key, fic);
          return { status: existing ? 200 : 201, body: ficJson(fic) };
        });
      },
    },
    {
      name: 'fic.delete',
      method: 'DELETE',
      family: 'arm',
      pattern: new RegExp(`${RG_BASE}/([^/]+)/federatedIdentityCredentials/([^/]+)$`, 'i'),
      async handle(ctx) {
        const [, rg = '', name = '', ficName = ''] = ctx.params;
        authorize(deps, ctx, `${FIC_ACTION}/delete`, state.identityId(rg, name));
        const identity = lookup(ctx);
        return ficWrite(identity, () => ({ status: identity.fics.delete(ficName.toLowerCase()) ? 200 : 204 }));
      },
    },
  ];
}

function parseFic(body: unknown, name: string): { issuer: string; subject: string; audiences: string[] } {
  if (!FIC_NAME.test(name)) {
    throw armError(400, 'InvalidResourceName', `Federated identity credential name '${name}' is invalid. It must start with a letter or number, contain only letters, numbers, hyphens and underscores, and be 3 to 120 characters long.`);
  }
  const props = asRecord(asRecord(body)['properties'] ?? null);
  const { issuer, subject, audiences } = props;
  if (typeof issuer !== 'string' || !/^https:\/\/[^\s]+$/.test(issuer)) {
    throw armError(400, 'BadRequest', "The property 'issuer' is required and must be an https URL.");
  }
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > 600) {
    throw armError(400, 'BadRequest', "The property 'subject' is required and must be 1 to 600 characters long.");
  }
  if (!Array.isArray(audiences) || audiences.length !== 1 || typeof audiences[0] !== 'string' || !audiences[0]) {
    throw armError(400, 'BadRequest', "The property 'audiences' must contain exactly one audience, e.g. 'api://AzureADTokenExchange'.");
  }
  return { issuer, subject, audiences: [audiences[0]] };
}

function normaliseLocation(location: string): string {
  return location.replace(/\s+/g, '').toLowerCase();
}
