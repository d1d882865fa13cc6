import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { buildInfo, COMMIT_ENV, packageVersion, registerProcessMetrics, versionText } from './build-info.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

test('the version is package.json\'s', () => {
  assert.equal(packageVersion(), pkg.version);
  assert.match(pkg.version, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
});

test('the commit comes from the image build, and says unknown otherwise', () => {
  assert.equal(buildInfo({ [COMMIT_ENV]: '0123abc' }).commit, '0123abc');
  assert.equal(buildInfo({}).commit, 'unknown');
  assert.equal(versionText('agent', { version: '1.2.3', nodeVersion: 'v24.1.0', commit: 'abc' }), 'pod-identity agent 1.2.3 (node v24.1.0, commit abc)\n');
});

test('both programs export build_info and the same unprefixed Node process metrics', async () => {
  for (const program of ['operator', 'agent'] as const) {
    const registry = new Registry();
    registerProcessMetrics(registry, program, { version: '1.2.3', nodeVersion: process.version, commit: 'abc' });
    registerProcessMetrics(registry, program); // idempotent per registry
    const text = await registry.metrics();
    assert.ok(text.includes(`podidentity_${program}_build_info{version="1.2.3",node_version="${process.version}",commit="abc"} 1`), text.slice(0, 200));
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.match(text, /^nodejs_heap_size_used_bytes /m);
    assert.doesNotMatch(text, /^podidentity_\w+_(process|nodejs)_/m);
  }
});
