import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aborted, shutdownSignal } from './signals.js';

test('the first signal aborts, a second one exits at once', async () => {
  const exits: number[] = [];
  const signal = shutdownSignal({ signals: ['SIGHUP'], exit: (code) => exits.push(code) });
  assert.equal(signal.aborted, false);
  process.emit('SIGHUP', 'SIGHUP');
  await aborted(signal);
  assert.match(String((signal.reason as Error).message), /SIGHUP/);
  assert.deepEqual(exits, [], 'a graceful shutdown is under way, not an exit');
  process.emit('SIGHUP', 'SIGHUP');
  assert.deepEqual(exits, [1]);
});

test('a drain that outlives the deadline is cut short', async () => {
  const { promise: exited, resolve } = Promise.withResolvers<number>();
  const signal = shutdownSignal({ signals: ['SIGWINCH'], forceExitAfterMs: 20, exit: resolve });
  process.emit('SIGWINCH', 'SIGWINCH');
  assert.equal(signal.aborted, true);
  // The deadline timer is unref'd, as in a real process; this one keeps the test's event loop alive meanwhile.
  const keepAlive = setTimeout(() => {}, 5000);
  assert.equal(await exited, 1);
  clearTimeout(keepAlive);
});
