import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { HotHistogram } from './hot-histogram.js';

const BUCKETS = [0.0001, 0.001, 0.01, 0.1, 1];

function pair() {
  const plainRegistry = new Registry();
  const hotRegistry = new Registry();
  const config = { name: 'd_seconds', help: 'h', labelNames: ['code', 'cache'] as const, buckets: BUCKETS };
  const plain = new Histogram({ ...config, labelNames: [...config.labelNames], registers: [plainRegistry] });
  const hot = new HotHistogram({ ...config, labelNames: [...config.labelNames], registers: [hotRegistry] });
  return { plain, hot, plainRegistry, hotRegistry };
}

test('a hot child exports exactly what prom-client would have for the same observations, mixed with ordinary ones', async () => {
  const { plain, hot, plainRegistry, hotRegistry } = pair();
  const hit = hot.child({ code: '200', cache: 'hit' });
  const values = [0.00005, 0.0001, 0.0004, 0.001, 0.002, 0.05, 0.5, 2, 7.25];
  for (const v of values) {
    plain.observe({ code: '200', cache: 'hit' }, v);
    hit.observe(v);
  }
  // The same label set through prom-client's own observe, and another label set only through it.
  plain.observe({ code: '200', cache: 'hit' }, 0.003);
  hot.observe({ code: '200', cache: 'hit' }, 0.003);
  plain.observe({ code: '503', cache: 'miss' }, 0.2);
  hot.observe({ code: '503', cache: 'miss' }, 0.2);
  assert.equal(await hotRegistry.metrics(), await plainRegistry.metrics());
  assert.deepEqual(await hotRegistry.getMetricsAsJSON(), await plainRegistry.getMetricsAsJSON());
  assert.equal(hot.child({ cache: 'hit', code: '200' }), hit, 'one child per label set, whatever the key order');
});

test('a resolved child exports nothing until it observes, as a label set prom-client has not seen', async () => {
  const { hot, plainRegistry, hotRegistry } = pair();
  hot.child({ code: '200', cache: 'hit' });
  assert.equal(await hotRegistry.metrics(), await plainRegistry.metrics());
});

test('reset zeroes the children, which keep counting afterwards', async () => {
  const { plain, hot, plainRegistry, hotRegistry } = pair();
  const hit = hot.child({ code: '200', cache: 'hit' });
  hit.observe(0.5);
  hotRegistry.resetMetrics();
  hit.observe(0.002);
  plain.observe({ code: '200', cache: 'hit' }, 0.002);
  assert.equal(await hotRegistry.metrics(), await plainRegistry.metrics());
});
