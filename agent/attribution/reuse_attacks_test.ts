/**
 * Attacks on attribution found by a fresh-eyes review: each test is named after what it stops.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeIdentities, FakePods, pod } from '../testing/fakes.js';
import { Attributor } from './attributor.js';
import type { PodInfo } from './types.js';

/** Reads answer with the API server's view when they were sent, however late the answer arrives. */
class SentAtPods extends FakePods {
  override async readPod(namespace: string, name: string): Promise<PodInfo | undefined> {
    this.reads++;
    const seen = this.server.find((p) => p.namespace === namespace && p.name === name);
    await this.gate;
    return seen;
  }
}

/** Yields to the event loop until `condition` holds (a bounded spin on setImmediate, not a sleep). */
async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setImmediate(r));
  }
}

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

  test('address reuse during an in-flight read: a read of the previous owner sent before the new pod connected never answers for it', async () => {
    const pods = new SentAtPods();
    const attributor = new Attributor('node-1', pods, new FakeIdentities(), { catchUpMs: 50 });
    const previous = pod('previous-owner', '10.0.0.7');
    pods.cached = pods.server = [previous];
    let release!: () => void;
    pods.gate = new Promise<void>((r) => (release = r));
    const fromPrevious = peer('10.0.0.7');
    attributor.connectionOpened(fromPrevious);
    const previousAnswer = attributor.attribute(fromPrevious);
    await until(() => pods.reads === 1); // sent: it will say "previous-owner is live at 10.0.0.7"
    // The previous owner is deleted and the attacker's new pod takes its address; the watch shows neither yet.
    pods.server = [pod('attacker', '10.0.0.7')];
    const fromAttacker = peer('10.0.0.7');
    attributor.connectionOpened(fromAttacker);
    const attackerAnswer = attributor.attribute(fromAttacker);
    release(); // the old read's answer arrives after the attacker's connection was accepted
    const prev = await previousAnswer;
    assert.equal(prev.kind === 'pod' && prev.pod.name, 'previous-owner', 'the read sent before serves the connection opened before it');
    const got = await attackerAnswer;
    assert.notEqual(got.kind === 'pod' ? got.pod.name : got.kind, 'previous-owner', "the attacker's connection got the previous owner's identity");
    assert.equal(pods.reads, 2, "the attacker's connection waited for a read sent after it was accepted");
  });
});
