import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { registerOperatorMetrics } from '../metrics.js';
import { instrumentedCall } from './instrument.js';

async function codesAfter(calls: (() => Promise<unknown>)[]): Promise<string[]> {
  const registry = new Registry();
  const call = instrumentedCall(registerOperatorMetrics(registry));
  for (const fn of calls) await call('identities.get', fn).catch(() => undefined);
  const metric = await registry.getSingleMetric('podidentity_operator_azure_request_duration_seconds')!.get();
  return [...new Set(metric.values.map((v) => String(v.labels.code)).filter((c) => c !== 'undefined'))].sort();
}

test('the ARM code label is always a status class, for successes and failures alike', async () => {
  const codes = await codesAfter([
    async () => 'ok',
    async () => { throw Object.assign(new Error('not found'), { statusCode: 404 }); },
    async () => { throw Object.assign(new Error('forbidden'), { statusCode: 403, code: 'AuthorizationFailed' }); },
    async () => { throw Object.assign(new Error('slow down'), { statusCode: 429 }); },
    async () => { throw Object.assign(new Error('bad gateway'), { statusCode: 502 }); },
    async () => { throw new Error('socket hang up'); },
  ]);
  assert.deepEqual(codes, ['2xx', '4xx', '5xx', 'error']);
});
