/**
 * Attacks on attribution found by a fresh-eyes review: each test is named after what it stops.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeIdentities, FakePods, pod } from '../testing/fakes.js';
import { Attributor } from './attributor.js';

function peer(remoteAddress: string): { remoteAddress: string } {
  return { remoteAddress };
}

function setup() {
  const pods = new FakePods();
  return { pods, attributor: new Attributor('node-1', pods, new FakeIdentities(), { catchUpMs: 50 }) };
}

describe('attribution attacks', () => {
  test('gone-UID poisoning: a connection from the address a live pod just left does not lock that pod out at its new address', async () => {
    const { pods, attributor } = setup();
    // The victim's sandbox was recreated: same pod (same UID), new address. The watch has not delivered it yet.
    const before = pod('victim', '10.0.0.5');
    const after = pod('victim', '10.0.0.9');
    pods.cached = [before];
    pods.server = [after];
    // The attacker now holds the released address and connects before the watch catches up.
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown', 'the old address is no longer the victim');
    pods.cached = [after]; // the watch catches up
    const who = await attributor.attribute(peer('10.0.0.9'));
    assert.equal(who.kind === 'pod' && who.pod.uid, after.uid, 'the victim is still itself at its new address');
  });

  test('IP reuse behind a terminating pod: a new connection is never attributed to a pod being deleted', async () => {
    const { pods, attributor } = setup();
    // The previous owner is being deleted: its sandbox (and address) may already be gone, and the new owner's
    // status (with the address) not written yet, so the API server still shows the old owner there.
    const terminating = pod('old-owner', '10.0.0.5', { terminating: true });
    pods.cached = pods.server = [terminating];
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown');
  });

  test('IP reuse behind a terminating pod the watch has not shown as deleting yet: the read decides', async () => {
    const { pods, attributor } = setup();
    pods.cached = [pod('old-owner', '10.0.0.5')];
    pods.server = [pod('old-owner', '10.0.0.5', { terminating: true })];
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown');
  });

  test('a connection pinned before its pod began terminating keeps working during graceful shutdown', async () => {
    const { pods, attributor } = setup();
    pods.cached = pods.server = [pod('a', '10.0.0.5')];
    const conn = peer('10.0.0.5');
    assert.equal((await attributor.attribute(conn)).kind, 'pod');
    pods.cached = pods.server = [pod('a', '10.0.0.5', { terminating: true })];
    assert.equal((await attributor.attribute(conn)).kind, 'pod', 'the socket was opened by the pod itself');
    assert.equal((await attributor.attribute(peer('10.0.0.5'))).kind, 'unknown', 'but no new connection');
  });
});
