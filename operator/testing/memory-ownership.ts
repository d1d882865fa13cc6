import { normalizeId } from '../azure/ids.js';
import type { OwnershipStore } from '../podidentity/ownership.js';

interface Entry {
  scaleSet: string;
  identities: string[];
}

/** The OwnershipStore in memory, keyed by the canonical scale-set id as the ConfigMap store is. */
export class MemoryOwnershipStore implements OwnershipStore {
  readonly entries = new Map<string, Entry>();
  async get(scaleSetId: string): Promise<string[]> {
    return [...(this.entries.get(normalizeId(scaleSetId))?.identities ?? [])];
  }
  async set(scaleSetId: string, identityIds: string[]): Promise<void> {
    if (identityIds.length === 0) this.entries.delete(normalizeId(scaleSetId));
    else this.entries.set(normalizeId(scaleSetId), { scaleSet: scaleSetId, identities: [...identityIds] });
  }
  async scaleSetsWith(identityId: string): Promise<string[]> {
    return [...this.entries.values()].filter((e) => e.identities.some((i) => normalizeId(i) === normalizeId(identityId))).map((e) => e.scaleSet);
  }
}
