import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeAzure, scaleSetResourceId } from '../testing/fake-azure.js';
import { AzureError } from '../azure/errors.js';
import { identityResourceId, normalizeId } from '../azure/ids.js';
import { MemoryOwnershipStore } from '../testing/memory-ownership.js';
import { ScaleSetBatcher } from './scaleset-batcher.js';

const SUB = '00000000-0000-4000-8000-000000000001';
const ss = scaleSetResourceId(SUB, 'mc_rg', 'pool-a');
const id = (i: number) => identityResourceId(SUB, 'pods', `id${i}`);
const WINDOW = 60;

function setup(opts: { maxBackoffMs?: number } = {}) {
  const azure = new FakeAzure(SUB);
  azure.seedScaleSet(ss);
  const patchTimes: number[] = [];
  const patch = azure.scaleSets.patch;
  azure.scaleSets.patch = (...args) => (patchTimes.push(performance.now()), patch(...args));
  const batcher = new ScaleSetBatcher({ scaleSets: azure.scaleSets, ownership: new MemoryOwnershipStore(), windowMs: WINDOW, now: () => performance.now(), ...opts });
  const assigned = () => azure.scaleSetState.get(normalizeId(ss))!.userAssigned.map(normalizeId).sort();
  const gaps = () => patchTimes.slice(1).map((t, i) => t - patchTimes[i]!);
  return { azure, batcher, patchTimes, assigned, gaps };
}

describe('ScaleSetBatcher', () => {
  it('demands within one window share one PATCH', async () => {
    const { batcher, patchTimes, assigned } = setup();
    for (let i = 0; i < 5; i++) batcher.setDemand({ key: `ns/p${i}`, identityId: id(i), scaleSets: [ss] });
    await batcher.idle();
    assert.equal(patchTimes.length, 1);
    assert.deepEqual(assigned(), [0, 1, 2, 3, 4].map((i) => normalizeId(id(i))).sort());
  });

  it('a retry after a failed PATCH still waits a full window after it', async () => {
    const { azure, batcher, patchTimes, assigned, gaps } = setup({ maxBackoffMs: 1 });
    azure.failNext('scaleSets.update', new AzureError('internal error', 'scaleSets.update', 500));
    batcher.setDemand({ key: 'ns/p0', identityId: id(0), scaleSets: [ss] });
    await batcher.idle();
    assert.equal(patchTimes.length, 2, 'failed PATCH, then the retry');
    assert.ok(gaps().every((g) => g >= WINDOW), `gaps ${gaps().join(', ')}`);
    assert.deepEqual(assigned(), [normalizeId(id(0))]);
  });

  it('demands arriving while a PATCH is in flight get the next PATCH, a full window later, and none is lost', async () => {
    const { azure, batcher, patchTimes, assigned, gaps } = setup();
    // The first PATCH is slow: demands keep arriving during it, and its follow-up flush is due at once.
    const patch = azure.scaleSets.patch;
    let slow = true;
    azure.scaleSets.patch = async (...args) => {
      const result = patch(...args);
      if (slow) {
        slow = false;
        for (let i = 1; i <= 3; i++) {
          batcher.setDemand({ key: `ns/p${i}`, identityId: id(i), scaleSets: [ss] });
          await new Promise((r) => setTimeout(r, WINDOW / 2));
        }
      }
      return result;
    };
    batcher.setDemand({ key: 'ns/p0', identityId: id(0), scaleSets: [ss] });
    await batcher.idle();
    assert.ok(patchTimes.length >= 2);
    assert.ok(gaps().every((g) => g >= WINDOW), `gaps ${gaps().join(', ')}`);
    assert.deepEqual(assigned(), [0, 1, 2, 3].map((i) => normalizeId(id(i))).sort());
  });

  it('under a steady trickle of demands: never two PATCHes to a scale set within a window, each demand PATCHed within two windows', async () => {
    const { batcher, patchTimes, assigned, gaps } = setup();
    const asked: number[] = [];
    for (let i = 0; i < 12; i++) {
      asked.push(performance.now());
      batcher.setDemand({ key: `ns/p${i}`, identityId: id(i), scaleSets: [ss] });
      await new Promise((r) => setTimeout(r, WINDOW / 3));
    }
    await batcher.idle();
    assert.ok(gaps().every((g) => g >= WINDOW), `gaps ${gaps().join(', ')}`);
    assert.deepEqual(assigned(), Array.from({ length: 12 }, (_, i) => normalizeId(id(i))).sort());
    // Each demand is carried by the first PATCH sent after it, no later than two windows after it was asked.
    for (const at of asked) assert.ok(patchTimes.some((t) => t >= at && t - at <= 2 * WINDOW + 500), `demand at ${at}: PATCHes ${patchTimes.join(', ')}`);
  });
});
