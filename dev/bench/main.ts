/**
 * `make bench`: P1–P5 and the soak from issue 7, written to <out>/report.md and <out>/report.json.
 * See dev/bench/README.md for what each section measures and how to read the report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runAgentScale, runP1, runP2, setupAgentStage, type AgentStage } from './agent-sections.js';
import { P6_TITLE, runP6 } from './attribution-section.js';
import { buildRuntime, removeRuntime } from './build.js';
import { startEnv, type BenchEnv } from './fixture.js';
import { parseOptions, usage, type BenchOptions, type SectionId } from './options.js';
import { updateReadme } from './readme.js';
import { GoalBook, lineChartSvg, machineInfo, notMeasured, renderMarkdown, section, type Report, type Section } from './report.js';
import { runOperatorSections } from './operator-sections.js';
import { runSoak } from './soak.js';

const TITLES: Record<SectionId, string> = {
  P1: 'Cached token throughput and latency (agent A vs bare Node http B)',
  P2: 'Cache-miss overhead and single-flight',
  P3: 'Convergence at scale (operator)',
  P4: 'Memory',
  P5: 'How cost grows with load',
  P6: P6_TITLE,
  SOAK: 'Resilience and security soak',
};

const started = Date.now();
const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);

async function run(opts: BenchOptions): Promise<Report> {
  const goals = new GoalBook();
  const sections = new Map<SectionId, Section>();
  const charts: string[] = [];
  const want = (id: SectionId) => opts.only.includes(id);
  /** A section that throws is reported as failed (and listed as a gap); the others still run. */
  const guarded = async <T>(id: SectionId, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      log(`${id} failed: ${(err as Error)?.stack ?? message}`);
      sections.set(id, notMeasured(id, TITLES[id], `failed: ${message.split('\n')[0]}`));
      goals.unmeasured(id, 'section ran to completion', 'no harness error', `failed: ${message.split('\n')[0]}`);
      return undefined;
    }
  };
  let env: BenchEnv | undefined;
  let stage: AgentStage | undefined;
  try {
    log('compiling the agent and the load tools to JavaScript');
    await buildRuntime();
    env = await startEnv(log);
    if (opts.only.length) stage = await setupAgentStage(env, log); // every section uses the agent (P3: Node-mode first token)
    if (stage && want('P1')) await guarded('P1', async () => sections.set('P1', await runP1(stage!, opts, goals, log)));
    if (stage && want('P2')) await guarded('P2', async () => sections.set('P2', await runP2(stage!, opts, goals, log)));
    // Before P3–P5 grow the cluster, and it removes its crowd of pods when done.
    if (stage && want('P6')) await guarded('P6', async () => sections.set('P6', await runP6(stage!, opts, goals, log)));

    let p5Agent: Awaited<ReturnType<typeof runAgentScale>> | undefined;
    if (stage && (want('P4') || want('P5'))) {
      p5Agent = await guarded('P4', () => runAgentScale(stage!, opts, goals, log, want('P5'), opts.p4 === 'both'));
      if (want('P4') && p5Agent) sections.set('P4', p5Agent.p4);
    }

    const failedOp = notMeasured('P3', TITLES.P3, 'failed: see the P3 section');
    const op = (await guarded('P3', () => runOperatorSections(env!, opts, goals, log, { p3: want('P3'), p4: want('P4') && opts.p4 === 'both', p5: want('P5') }, stage?.agent.origin))) ?? {
      p3: sections.get('P3') ?? failedOp,
      p4: { ...failedOp, id: 'P4' },
      p5: { ...failedOp, id: 'P5' },
    };
    if (want('P3')) sections.set('P3', op.p3);
    if (want('P4') && opts.p4 === 'both') {
      const p4 = sections.get('P4') ?? section('P4', TITLES.P4);
      p4.tables.push(...op.p4.tables);
      p4.notes.push(...op.p4.notes);
      p4.data = { ...p4.data, operator: op.p4.data };
      if (op.p4.status !== 'measured') {
        p4.status = 'partial';
        p4.reason = `operator half: ${op.p4.reason ?? op.p4.status}`;
      }
      sections.set('P4', p4);
    }

    if (want('P5')) {
      const p5 = section('P5', TITLES.P5);
      if (p5Agent?.p5Rows.length) {
        p5.tables.push({
          title: 'P1 at concurrency 16 as the agent’s world grows (A/B against B measured right before A)',
          columns: ['Pods on node', 'PodIdentities in cluster', 'PodIdentities in caller’s namespace', 'A req/s', 'A p50 (ms)', 'A p99 (ms)', 'A p999 (ms)', 'A/B req/s'],
          rows: p5Agent.p5Rows,
        });
      }
      if (stage && sections.get('P1')) {
        const points = (sections.get('P1')!.data['points'] ?? []) as { concurrency: number; a: { latency: { p50: number; p99: number } }; b: { latency: { p50: number; p99: number } } }[];
        p5.tables.push({
          title: 'P1 latency as concurrency grows (from P1)',
          columns: ['Concurrency', 'A p50 (ms)', 'A p99 (ms)', 'B p50 (ms)', 'B p99 (ms)'],
          rows: points.map((p) => [p.concurrency, p.a.latency.p50, p.a.latency.p99, p.b.latency.p50, p.b.latency.p99]),
        });
        const svg = lineChartSvg('P1 latency vs concurrency', 'concurrent clients', 'latency (ms)', [
          { name: 'A p50', points: points.map((p) => [p.concurrency, p.a.latency.p50]) },
          { name: 'A p99', points: points.map((p) => [p.concurrency, p.a.latency.p99]) },
          { name: 'B p50', points: points.map((p) => [p.concurrency, p.b.latency.p50]) },
          { name: 'B p99', points: points.map((p) => [p.concurrency, p.b.latency.p99]) },
        ]);
        if (svg) {
          writeFileSync(join(opts.out, 'p1-latency.svg'), svg);
          charts.push('p1-latency.svg');
        }
      }
      p5.tables.push(...op.p5.tables);
      p5.notes.push(...op.p5.notes);
      if (op.p5Chart) {
        writeFileSync(join(opts.out, 'p3-convergence.svg'), op.p5Chart);
        charts.push('p3-convergence.svg');
      }
      if (op.p5.status !== 'measured') {
        p5.status = 'partial';
        p5.reason = `P3 growth: ${op.p5.reason ?? op.p5.status}`;
      }
      p5.data = { agent: p5Agent?.p5Points ?? [], operator: op.p5.data };
      sections.set('P5', p5);
    }

    if (want('SOAK')) {
      if (opts.soakMs === 0) sections.set('SOAK', { ...notMeasured('SOAK', TITLES.SOAK, 'skipped: --soak-ms 0 (the default with --smoke)'), status: 'skipped' });
      else if (!stage) sections.set('SOAK', notMeasured('SOAK', TITLES.SOAK, 'the agent stage did not start'));
      else await guarded('SOAK', async () => sections.set('SOAK', await runSoak(env!, stage!, opts, goals, log)));
    }
  } finally {
    await stage?.stop().catch((err: Error) => log(`stopping the agent stage: ${err.message}`));
    await env?.stop(join(opts.out, 'logs')).catch((err: Error) => log(`stopping the environment: ${err.message}`));
    removeRuntime();
  }

  const ordered: Section[] = [];
  for (const id of ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'SOAK'] as SectionId[]) {
    ordered.push(sections.get(id) ?? { ...notMeasured(id, TITLES[id], 'skipped: not in --only'), status: 'skipped' });
  }
  return {
    generatedAt: new Date().toISOString(),
    command: `node --import tsx dev/bench/main.ts ${process.argv.slice(2).join(' ')}`.trim(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine,
    options: opts as unknown as Record<string, unknown>,
    sections: ordered,
    goals: goals.goals,
    gaps: goals.goals.filter((g) => g.met !== true),
    charts,
  };
}

const machine = machineInfo();
let opts: BenchOptions;
try {
  opts = parseOptions(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n\n${usage()}\n`);
  process.exit(2);
}
opts.out = resolve(opts.out);
mkdirSync(opts.out, { recursive: true });
run(opts).then(
  (report) => {
    writeFileSync(join(opts.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    writeFileSync(join(opts.out, 'report.md'), renderMarkdown(report));
    log(`wrote ${join(opts.out, 'report.md')} and report.json: ${report.goals.filter((g) => g.met === true).length} goals met, ${report.gaps.length} gaps`);
    if (opts.updateReadme) {
      updateReadme(opts.updateReadme, report);
      log(`updated the figures in ${opts.updateReadme}`);
    }
    for (const g of report.gaps) log(`  gap: ${g.section} ${g.name}: ${g.measured} (target ${g.target})`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
