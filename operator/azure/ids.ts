import { createHash } from 'node:crypto';
import { v5 as uuidv5 } from 'uuid';
import { parseArmId } from './arm-id.js';

/** Parts of an ARM resource id `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}`. */
export interface ResourceIdParts {
  subscriptionId: string;
  resourceGroup: string;
  provider: string;
  type: string;
  name: string;
}

/**
 * Parses a top-level ARM resource id in canonical form (see arm-id.ts); undefined when it is not one (nested
 * and extension resources included: their last type and name are not a resource in the resource group). The
 * adapters parse every id through here, so a non-canonical id never reaches an Azure SDK call.
 */
export function parseResourceId(id: string): ResourceIdParts | undefined {
  const p = parseArmId(id);
  if (!p.ok || p.value.kind !== 'resource' || !p.value.resourceGroup || p.value.extension || p.value.type?.includes('/')) return undefined;
  const v = p.value;
  return { subscriptionId: v.subscriptionId!, resourceGroup: v.resourceGroup!, provider: v.provider!, type: v.type!, name: v.name! };
}

export function identityResourceId(subscriptionId: string, resourceGroup: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
}

export function parseIdentityId(id: string): ResourceIdParts | undefined {
  const p = parseResourceId(id);
  return p && p.provider.toLowerCase() === 'microsoft.managedidentity' && p.type.toLowerCase() === 'userassignedidentities' ? p : undefined;
}

export function parseScaleSetId(id: string): ResourceIdParts | undefined {
  const p = parseResourceId(id);
  return p && p.provider.toLowerCase() === 'microsoft.compute' && p.type.toLowerCase() === 'virtualmachinescalesets' ? p : undefined;
}

const PROVIDER_ID = /^azure:\/\/(\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/[^/]+)\/virtualMachines\/[^/]+$/i;

/**
 * The scale set behind a node, from `spec.providerID`
 * (`azure:///subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{n}`).
 * Undefined for anything else (availability-set VMs, other clouds): those nodes cannot get node-mode identities.
 */
export function scaleSetOfProviderId(providerID: string | undefined): string | undefined {
  if (!providerID) return undefined;
  const m = PROVIDER_ID.exec(providerID);
  return m ? m[1] : undefined;
}

/** ARM ids compare case-insensitively and without a trailing slash. */
export const normalizeId = (id: string): string => id.replace(/\/+$/, '').toLowerCase();

/** The GUID at the end of a roleDefinitionId (or the GUID itself), lower-cased. */
export function roleDefinitionGuid(roleDefinitionId: string): string {
  return (roleDefinitionId.split('/').pop() ?? roleDefinitionId).toLowerCase();
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isGuid = (s: string): boolean => GUID.test(s);

/** A role given as a roleDefinitionId (or a bare GUID) rather than a name. */
export const isRoleDefinitionId = (role: string): boolean => /\/providers\/Microsoft\.Authorization\/roleDefinitions\//i.test(role) || isGuid(role);

/**
 * Namespace of the operator's v5 UUIDs. Fixed forever: changing it would make the operator forget every role
 * assignment it created (it recognises its own assignments by recomputing their names).
 */
export const ROLE_ASSIGNMENT_NAMESPACE = '6f1e1a2c-3b7d-5c4e-9a8f-2d0b7c5e4a13';

/**
 * The deterministic name of the assignment of `roleDefinitionId` to `principalId` at `scope`. Retries and
 * restarts PUT the same name, and an assignment whose name matches is one this operator created.
 */
export function roleAssignmentName(principalId: string, roleDefinitionId: string, scope: string): string {
  return uuidv5(`${principalId.toLowerCase()}|${roleDefinitionGuid(roleDefinitionId)}|${normalizeId(scope)}`, ROLE_ASSIGNMENT_NAMESPACE);
}

export const shortHash = (s: string, length = 8): string => createHash('sha256').update(s).digest('hex').slice(0, length);
