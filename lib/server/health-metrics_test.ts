import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { startHealthMetricsServer } from './health-metrics.js';

test('/healthz, /readyz follow the callbacks; /metrics serves the registry', async () => {
  const registry = new Registry();
  new Counter({ name: 'podidentity_operator_test_total', help: 'test', registers: [registry] }).inc(3);
  let problems = ['pod cache not synced', 'rules not in place'];
  const server = await startHealthMetricsServer({ port: 0, host: '127.0.0.1', registry, notReady: () => problems });
  const get = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${server.port}${path}`, init);
  try {
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/livez')).status, 200);
    const notReady = await get('/readyz');
    assert.equal(notReady.status, 503);
    assert.equal(await notReady.text(), 'pod cache not synced\nrules not in place\n', 'says what keeps it from being ready');
    problems = [];
    assert.equal((await get('/readyz?verbose')).status, 200);
    const metrics = await get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /podidentity_operator_test_total 3/);
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await get('/healthz', { method: 'POST' })).status, 405);
  } finally {
    await server.close();
  }
});

test('a throwing readiness check means not ready', async () => {
  const server = await startHealthMetricsServer({ port: 0, host: '127.0.0.1', registry: new Registry(), notReady: () => { throw new Error('x'); } });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status, 503);
  } finally {
    await server.close();
  }
});

test('a port in use is an error at start, not later', async () => {
  const first = await startHealthMetricsServer({ port: 0, host: '127.0.0.1', registry: new Registry(), notReady: () => [] });
  try {
    await assert.rejects(startHealthMetricsServer({ port: first.port, host: '127.0.0.1', registry: new Registry(), notReady: () => [] }), /EADDRINUSE/);
  } finally {
    await first.close();
  }
});
