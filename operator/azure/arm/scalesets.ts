import type { ComputeManagementClient, VirtualMachineScaleSet } from '@azure/arm-compute';
import { parseScaleSetId } from '../ids.js';
import type { AzureCall } from '../instrument.js';
import type { ScaleSetClient, ScaleSetIdentities } from '../types.js';

function partsOf(id: string) {
  const p = parseScaleSetId(id);
  if (!p) throw new Error(`not a scale set resource id: ${id}`);
  return p;
}

function toIdentities(id: string, vmss: VirtualMachineScaleSet): ScaleSetIdentities {
  return { id, type: vmss.identity?.type ?? 'None', userAssigned: Object.keys(vmss.identity?.userAssignedIdentities ?? {}) };
}

const hasSystemAssigned = (type: string): boolean => /SystemAssigned/i.test(type);

export class ArmScaleSetClient implements ScaleSetClient {
  constructor(
    /** A client bound to the scale set's own subscription (from its resource id). */
    private readonly client: (subscriptionId: string) => Promise<ComputeManagementClient>,
    private readonly call: AzureCall,
    private readonly pollIntervalMs = 2000,
  ) {}

  async get(scaleSetId: string): Promise<ScaleSetIdentities> {
    const p = partsOf(scaleSetId);
    const client = await this.client(p.subscriptionId);
    return toIdentities(scaleSetId, await this.call('scaleSets.get', () => client.virtualMachineScaleSets.get(p.resourceGroup, p.name)));
  }

  async patch(scaleSetId: string, add: string[], remove: string[], onAccepted?: () => void): Promise<ScaleSetIdentities> {
    const p = partsOf(scaleSetId);
    const current = await this.get(scaleSetId);
    const removing = new Set(remove.map((r) => r.toLowerCase()));
    const remaining = current.userAssigned.filter((id) => !removing.has(id.toLowerCase())).length + add.length;
    const system = hasSystemAssigned(current.type);
    // The PATCH's identity.type is authoritative: keep a system-assigned identity that was there.
    const type = remaining > 0 ? (system ? 'SystemAssigned, UserAssigned' : 'UserAssigned') : system ? 'SystemAssigned' : 'None';
    const userAssignedIdentities: Record<string, object | null> = {};
    for (const id of add) userAssignedIdentities[id] = {};
    for (const id of remove) userAssignedIdentities[id] = null; // null removes on the wire
    const identity = remaining > 0 ? { type, userAssignedIdentities } : { type };
    const client = await this.client(p.subscriptionId);
    const result = await this.call('scaleSets.update', async () => {
      const poller = client.virtualMachineScaleSets.update(p.resourceGroup, p.name, { identity } as Parameters<ComputeManagementClient['virtualMachineScaleSets']['update']>[2], {
        updateIntervalInMs: this.pollIntervalMs,
      });
      await poller.submitted();
      onAccepted?.();
      return await poller;
    });
    return toIdentities(scaleSetId, result);
  }
}
