import type { ManagedServiceIdentityClient, Identity, FederatedIdentityCredential } from '@azure/arm-msi';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../../lib/api/types.js';
import { NotFoundError } from '../errors.js';
import { parseIdentityId } from '../ids.js';
import type { AzureCall } from '../instrument.js';
import type { AzureIdentity, FederatedCredential, FederatedCredentialClient, IdentityClient } from '../types.js';
import { KeyedMutex } from '../mutex.js';

function partsOf(resourceId: string) {
  const p = parseIdentityId(resourceId);
  if (!p) throw new Error(`not a user-assigned identity resource id: ${resourceId}`);
  return p;
}

function toIdentity(i: Identity, resourceGroup: string): AzureIdentity {
  return {
    id: i.id ?? '',
    name: i.name ?? '',
    resourceGroup,
    location: i.location,
    tags: { ...(i.tags ?? {}) },
    clientId: i.clientId ?? '',
    principalId: i.principalId ?? '',
    tenantId: i.tenantId ?? '',
  };
}

/** An SDK client bound to one subscription: the identity's, taken from its resource id, never the operator's. */
export type MsiClientFor = (subscriptionId: string) => ManagedServiceIdentityClient;

export class ArmIdentityClient implements IdentityClient {
  constructor(private readonly clientFor: MsiClientFor, private readonly call: AzureCall) {}

  async ensure(resourceId: string, location: string, tags: Record<string, string>): Promise<AzureIdentity> {
    const p = partsOf(resourceId);
    const result = await this.call('identities.createOrUpdate', () => this.clientFor(p.subscriptionId).userAssignedIdentities.createOrUpdate(p.resourceGroup, p.name, { location, tags }));
    return toIdentity(result, p.resourceGroup);
  }

  async get(resourceId: string): Promise<AzureIdentity> {
    const p = partsOf(resourceId);
    return toIdentity(await this.call('identities.get', () => this.clientFor(p.subscriptionId).userAssignedIdentities.get(p.resourceGroup, p.name)), p.resourceGroup);
  }

  async delete(resourceId: string): Promise<void> {
    const p = partsOf(resourceId);
    try {
      await this.call('identities.delete', () => this.clientFor(p.subscriptionId).userAssignedIdentities.delete(p.resourceGroup, p.name));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
}

export class ArmFederatedCredentialClient implements FederatedCredentialClient {
  /** Azure rejects concurrent FIC writes under one identity (409 ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity). */
  private readonly writes = new KeyedMutex();

  constructor(private readonly clientFor: MsiClientFor, private readonly call: AzureCall) {}

  async list(identityId: string): Promise<FederatedCredential[]> {
    const p = partsOf(identityId);
    return this.call('federatedCredentials.list', async () => {
      const out: FederatedCredential[] = [];
      for await (const f of this.clientFor(p.subscriptionId).federatedIdentityCredentials.list(p.resourceGroup, p.name)) out.push(toCredential(f));
      return out;
    });
  }

  async ensure(identityId: string, credential: FederatedCredential): Promise<void> {
    const p = partsOf(identityId);
    await this.writes.run(identityId.toLowerCase(), () =>
      this.call('federatedCredentials.createOrUpdate', () =>
        this.clientFor(p.subscriptionId).federatedIdentityCredentials.createOrUpdate(p.resourceGroup, p.name, credential.name, {
          issuer: credential.issuer,
          subject: credential.subject,
          audiences: credential.audiences.length ? credential.audiences : [TOKEN_EXCHANGE_AUDIENCE],
        }),
      ),
    );
  }

  async delete(identityId: string, name: string): Promise<void> {
    const p = partsOf(identityId);
    await this.writes.run(identityId.toLowerCase(), async () => {
      try {
        await this.call('federatedCredentials.delete', () => this.clientFor(p.subscriptionId).federatedIdentityCredentials.delete(p.resourceGroup, p.name, name));
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    });
  }
}

function toCredential(f: FederatedIdentityCredential): FederatedCredential {
  return { name: f.name ?? '', issuer: f.issuer ?? '', subject: f.subject ?? '', audiences: f.audiences ?? [] };
}
