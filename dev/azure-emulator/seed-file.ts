/** The JSON seeding format shared by `main.ts --seed file.json` and the admin endpoint's `POST /seed`. */
import type { AzureEmulator } from './emulator.js';
import type { IdentitySeed, ManagedClusterSeed, RoleAssignmentSeed, ScaleSetSeed, ServicePrincipalSeed } from './seed.js';
import type { TrustIssuerOptions } from './issuers.js';

export interface SeedFile {
  resourceGroups?: { name: string; location?: string }[];
  servicePrincipals?: ServicePrincipalSeed[];
  identities?: IdentitySeed[];
  scaleSets?: ScaleSetSeed[];
  managedClusters?: ManagedClusterSeed[];
  roleAssignments?: RoleAssignmentSeed[];
  trustedIssuers?: TrustIssuerOptions[];
}

/** Applies a seed file in dependency order; returns what each seeding step produced. */
export function applySeedFile(emu: AzureEmulator, file: SeedFile): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  const each = <T>(key: string, items: T[] | undefined, fn: (item: T) => unknown) => {
    if (items?.length) out[key] = items.map(fn);
  };
  each('resourceGroups', file.resourceGroups, (rg) => emu.seed.resourceGroup(rg.name, rg.location));
  each('servicePrincipals', file.servicePrincipals, (sp) => emu.seed.servicePrincipal(sp));
  each('identities', file.identities, (i) => emu.seed.identity(i));
  each('scaleSets', file.scaleSets, (ss) => emu.seed.scaleSet(ss));
  each('managedClusters', file.managedClusters, (mc) => emu.seed.managedCluster(mc));
  each('roleAssignments', file.roleAssignments, (ra) => emu.seed.roleAssignment(ra));
  each('trustedIssuers', file.trustedIssuers, (ti) => {
    emu.seed.trustIssuer(ti);
    return { issuer: ti.issuer };
  });
  return out;
}
