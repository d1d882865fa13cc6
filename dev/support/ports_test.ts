import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePorts } from './ports.js';

test('freePorts never hands out the same port twice in one call', async () => {
  for (let round = 0; round < 20; round++) {
    const ports = await freePorts(4);
    assert.equal(ports.length, 4);
    assert.equal(new Set(ports).size, 4, `distinct: ${ports.join(', ')}`);
    for (const p of ports) assert.ok(p > 0);
  }
});
