import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { startHealthServer } from './server.js';

test('/healthz, /readyz follow the callbacks; /metrics serves the registry', async () => {
  const registry = new Registry();
  new Counter({ name: 'podidentity_operator_test_total', help: 'test', registers: [registry] }).inc(3);
  let ready = false;
  const server = await startHealthServer({ port: 0, host: '127.0.0.1', registry, ready: () => ready });
  const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);
  try {
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/readyz')).status, 503);
    ready = true;
    assert.equal((await get('/readyz')).status, 200);
    const metrics = await get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /podidentity_operator_test_total 3/);
    assert.equal((await get('/nope')).status, 404);
  } finally {
    await server.close();
  }
});

test('a throwing readiness check means not ready', async () => {
  const server = await startHealthServer({ port: 0, host: '127.0.0.1', registry: new Registry(), ready: () => { throw new Error('x'); } });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status, 503);
  } finally {
    await server.close();
  }
});
