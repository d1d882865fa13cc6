/**
 * `make test`'s smoke run of the benchmark harness: tiny sizes (N=10, ~2 s of load in total), its own
 * control plane, the real agent and operator. It checks that the harness runs and that both reports are
 * written with every section present — never whether a performance goal is met.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../support/processes.js';
import { AGENT_IMAGE, OPERATOR_IMAGE } from './processes.js';
import { BEGIN, END } from './readme.js';
import type { Report } from './report.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'podid-bench-smoke-'));
after(() => rmSync(out, { recursive: true, force: true }));

test('make bench --smoke writes report.md and report.json with every section', { timeout: 300_000 }, async () => {
  const readme = join(out, 'README.md');
  writeFileSync(readme, `# Title\n\n${BEGIN}\nfigures typed by hand\n${END}\n\nAfter.\n`);
  const bench = startProcess('bench', process.execPath, ['--import', 'tsx', join(REPO, 'dev/bench/main.ts'), '--smoke', '--out', out, '--update-readme', readme], { cwd: REPO });
  const code = await bench.exited;
  assert.equal(code, 0, `bench exited ${code}:\n${bench.output().slice(-4000)}`);

  assert.ok(existsSync(join(out, 'report.md')), 'report.md written');
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  const md = readFileSync(join(out, 'report.md'), 'utf8');

  assert.ok(report.machine.cores > 0);
  assert.equal(report.machine.nodeVersion, process.version);
  assert.match(md, new RegExp(`\\*\\*${report.machine.cores} cores\\*\\*`));
  assert.ok(md.includes(`Node ${process.version}`));
  for (const heading of ['## Goals', '## Gaps']) assert.ok(md.includes(heading), `${heading} in report.md`);

  assert.deepEqual(report.sections.map((s) => s.id), ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'SOAK']);
  for (const s of report.sections) {
    assert.ok(md.includes(`## ${s.id}: `), `section ${s.id} in report.md`);
    // A section the smoke run is meant to exercise must not have failed in the harness.
    assert.ok(!String(s.reason ?? '').startsWith('failed'), `${s.id}: ${s.reason}`);
  }
  const byId = new Map(report.sections.map((s) => [s.id, s]));
  // P1 measured A, B and the floor V at every concurrency, with answers (the harness works end to end).
  const points = byId.get('P1')!.data['points'] as { concurrency: number; a: { requests: number; statuses: Record<string, number> }; b: { requests: number }; v: { statuses: Record<string, number> } }[];
  assert.deepEqual(points.map((p) => p.concurrency), [1, 16, 64]);
  for (const p of points) {
    assert.ok(p.a.requests > 0 && p.b.requests > 0, `load at concurrency ${p.concurrency}`);
    assert.ok((p.a.statuses['200'] ?? 0) > 0, `agent answered 200 at concurrency ${p.concurrency}`);
    assert.ok((p.v.statuses['200'] ?? 0) > 0, `V confirmed the load's connections and answered 200 at concurrency ${p.concurrency}`);
  }
  assert.ok(byId.get('P2')!.tables.length >= 2);
  assert.ok(byId.get('P4')!.tables.length >= 1);
  assert.ok(byId.get('P5')!.tables.length >= 1);
  // P6: new connections with 0 and with a (tiny) crowd of pods elsewhere, each verified by about one read.
  const p6 = byId.get('P6')!.data['points'] as { pods: number; readsPerConnection: number; latency: { requests: number; statuses: Record<string, number> }; floorLatency: { requests: number; statuses: Record<string, number> }; throughput: { a: { statuses: Record<string, number> }; b: { requests: number } } }[];
  assert.deepEqual(p6.map((p) => p.pods), [0, 20]);
  for (const p of p6) {
    assert.ok(p.latency.requests > 0 && p.latency.statuses['200'] === p.latency.requests, `P6 new connections answered 200 with ${p.pods} other pods`);
    assert.ok(p.readsPerConnection > 0 && p.readsPerConnection <= 1, `P6 reads per new connection: ${p.readsPerConnection}`);
    assert.ok((p.throughput.a.statuses['200'] ?? 0) > 0 && p.throughput.b.requests > 0);
    assert.ok(p.floorLatency.requests > 0 && p.floorLatency.statuses['200'] === p.floorLatency.requests, `P6 floor V answered its paced connections with ${p.pods} other pods`);
  }
  // The 0-pod series again after the crowd is gone: the ratio's baseline is the mean of both.
  const again = byId.get('P6')!.data['emptyAfter'] as { pods: number; readsPerConnection: number; latency: { requests: number; statuses: Record<string, number> } };
  assert.equal(again.pods, 0);
  assert.ok(again.latency.requests > 0 && again.latency.statuses['200'] === again.latency.requests, 'P6 new connections answered 200 after the crowd is gone');
  assert.ok(again.readsPerConnection > 0 && again.readsPerConnection <= 1, `P6 reads per new connection after the crowd: ${again.readsPerConnection}`);
  assert.ok(report.goals.some((g) => g.section === 'P6' && /API-server requests per new connection/.test(g.name)));
  assert.equal(byId.get('P3')!.status, 'measured');
  assert.equal(byId.get('SOAK')!.status, 'skipped');

  // Every goal has a measured figure or says why not; gaps are exactly the goals not met.
  assert.ok(report.goals.length > 0);
  for (const g of report.goals) assert.ok(g.measured.length > 0);
  assert.deepEqual(report.gaps, report.goals.filter((g) => g.met !== true));

  // --update-readme (what `make bench` passes) put exactly this run's goals between the markers.
  const updated = readFileSync(readme, 'utf8');
  assert.ok(!updated.includes('typed by hand'));
  assert.ok(updated.startsWith(`# Title\n\n${BEGIN}\n`) && updated.endsWith(`${END}\n\nAfter.\n`));
  for (const g of report.goals) assert.ok(updated.includes(g.measured.replace(/\|/g, '\\|')), `README shows ${g.section} ${g.name}`);
  assert.ok(updated.includes(`Node ${process.version}`));
});

test('the bench runs the agent and operator with the node flags and env their images use', () => {
  for (const [dockerfile, image] of [['Dockerfile.agent', AGENT_IMAGE], ['Dockerfile.operator', OPERATOR_IMAGE]] as const) {
    const text = readFileSync(join(REPO, dockerfile), 'utf8');
    // A bounded young generation: V8 would otherwise size it from the machine's memory, not the container's.
    assert.ok(image.nodeFlags.some((f) => /^--max-semi-space-size=\d+$/.test(f)), `${dockerfile}: ${image.nodeFlags.join(' ')}`);
    for (const flag of image.nodeFlags) assert.ok(text.includes(`"${flag}"`), `${dockerfile} runs node with ${flag}`);
    assert.equal(image.env['NODE_ENV'], 'production', `${dockerfile}: the bench reads the image's ENV`);
    for (const [key, value] of Object.entries(image.env)) assert.ok(text.includes(`ENV ${key}=${value}`), `${dockerfile} sets ${key}=${value}`);
    assert.ok(!('PODIDENTITY_COMMIT' in image.env), 'a value the build fills in is not a runtime setting');
  }
  // The agent's memory settings (agent/README.md "## Memory"), so the bench's P4 measures them.
  assert.equal(AGENT_IMAGE.env['MALLOC_ARENA_MAX'], '2');
  assert.ok(AGENT_IMAGE.nodeFlags.includes('--max-semi-space-size=4'));
  // The memory reducer (agent/memory-reducer.ts) is active only with gc exposed.
  assert.ok(AGENT_IMAGE.nodeFlags.includes('--expose-gc'));
  assert.ok(AGENT_IMAGE.nodeFlags.includes('--no-maglev'));
});
