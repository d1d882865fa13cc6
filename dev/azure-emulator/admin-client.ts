/** Client for the admin endpoint (admin.ts), for tests and benchmarks that run the emulator out of process. */
import type { FaultRule } from './faults.js';
import { faultRuleToJson } from './faults.js';
import type { ArmSettings } from './arm/common.js';
import type { RequestLogEntry } from './request-log.js';
import type { SeedFile } from './seed-file.js';
import type {
  FederatedCredentialView,
  IdentitySeed,
  IdentityView,
  ManagedClusterSeed,
  ResourceGroupView,
  RoleAssignmentSeed,
  RoleAssignmentView,
  ScaleSetSeed,
  ScaleSetView,
  ServicePrincipalSeed,
} from './seed.js';
import type { TrustIssuerOptions } from './issuers.js';

export interface EmulatorInfo {
  armEndpoint: string;
  authorityHost: string;
  imdsEndpoint: string;
  tenantId: string;
  subscriptionId: string;
  caCertPath: string;
}

export class AdminClient {
  constructor(readonly url: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    const json = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new Error(`admin ${method} ${path}: HTTP ${res.status}: ${json.error ?? ''}`);
    return json;
  }

  info = () => this.call<EmulatorInfo>('GET', '/info');

  state = {
    identities: () => this.call<IdentityView[]>('GET', '/state/identities'),
    federatedCredentials: (identityId: string) => this.call<FederatedCredentialView[]>('GET', `/state/federated-credentials?identityId=${encodeURIComponent(identityId)}`),
    roleAssignments: () => this.call<RoleAssignmentView[]>('GET', '/state/role-assignments'),
    scaleSet: (rg: string, name: string) => this.call<ScaleSetView>('GET', `/state/scale-sets/${encodeURIComponent(rg)}/${encodeURIComponent(name)}`),
    resourceGroups: () => this.call<ResourceGroupView[]>('GET', '/state/resource-groups'),
  };

  requests = {
    log: () => this.call<RequestLogEntry[]>('GET', '/requests/log'),
    counts: () => this.call<Record<string, number>>('GET', '/requests/counts'),
    reset: () => this.call<object>('POST', '/requests/reset'),
  };

  faults = {
    /** RegExp paths are sent as their source. */
    set: async (rule: FaultRule) => (await this.call<{ id: number }>('POST', '/faults', faultRuleToJson(rule))).id,
    remove: (id: number) => this.call<object>('DELETE', `/faults/${id}`),
    clear: () => this.call<object>('DELETE', '/faults'),
  };

  settings = (patch: Partial<ArmSettings>) => this.call<ArmSettings>('PATCH', '/settings', patch);

  seed = {
    file: (file: SeedFile) => this.call<Record<string, unknown[]>>('POST', '/seed', file),
    resourceGroup: (name: string, location?: string) => this.call<ResourceGroupView>('POST', '/seed/resource-group', { name, location }),
    servicePrincipal: (sp: ServicePrincipalSeed) => this.call<{ clientId: string; principalId: string }>('POST', '/seed/service-principal', sp),
    identity: (seed: IdentitySeed) => this.call<IdentityView>('POST', '/seed/identity', seed),
    scaleSet: (seed: ScaleSetSeed) => this.call<ScaleSetView>('POST', '/seed/scale-set', seed),
    managedCluster: (seed: ManagedClusterSeed) => this.call<{ id: string; kubeletIdentity: IdentityView }>('POST', '/seed/managed-cluster', seed),
    roleAssignment: (seed: RoleAssignmentSeed) => this.call<RoleAssignmentView>('POST', '/seed/role-assignment', seed),
    trustIssuer: (options: TrustIssuerOptions) => this.call<object>('POST', '/seed/trust-issuer', options),
  };
}
