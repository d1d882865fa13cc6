/**
 * Dev-only: where a process's RSS is, for an investigation (BENCH_P4_DUMP=dir; see dev/bench/README.md).
 * Saves /proc/<pid>/smaps_rollup, a per-mapping summary of /proc/<pid>/smaps (Rss by file, or by kind for
 * anonymous memory), the agent's V8 heap spaces from its /metrics, and asks for a V8 heap snapshot when the
 * agent runs with `--heapsnapshot-signal=SIGUSR2` (given through BENCH_AGENT_NODE_FLAGS, with
 * `--diagnostic-dir=<dir>` to say where it is written).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../support/wait.js';

interface MappingSummary {
  name: string;
  mappings: number;
  sizeKb: number;
  rssKb: number;
  anonKb: number;
}

/** Sums smaps by mapping name; anonymous mappings are split by size, which tells V8's pages from malloc's. */
export function summariseSmaps(smaps: string): MappingSummary[] {
  const byName = new Map<string, MappingSummary>();
  let current: MappingSummary | undefined;
  for (const line of smaps.split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const [start, end] = line.split(' ')[0]!.split('-').map((h) => parseInt(h, 16)) as [number, number];
      const kb = (end - start) / 1024;
      let name = header[1]!.trim();
      if (!name) name = kb >= 64 * 1024 ? '[anon ≥ 64 MB: malloc arena reservations]' : kb === 256 ? '[anon 256 kB: V8 pages]' : kb >= 1024 ? '[anon ≥ 1 MB]' : '[anon < 1 MB]';
      current = byName.get(name);
      if (!current) byName.set(name, (current = { name, mappings: 0, sizeKb: 0, rssKb: 0, anonKb: 0 }));
      current.mappings++;
      current.sizeKb += kb;
      continue;
    }
    const field = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (field && current) {
      if (field[1] === 'Rss') current.rssKb += Number(field[2]);
      else current.anonKb += Number(field[2]);
    }
  }
  return [...byName.values()].sort((a, b) => b.rssKb - a.rssKb);
}

export async function dumpProcessMemory(pid: number, dir: string, label: string, metricsOrigin?: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${label}.smaps_rollup`), readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  const summary = summariseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  const lines = summary.map((m) => `${String(Math.round(m.rssKb / 102.4) / 10).padStart(7)} MB rss ${String(Math.round(m.anonKb / 102.4) / 10).padStart(7)} MB anon ${String(m.mappings).padStart(4)} maps  ${m.name}`);
  writeFileSync(join(dir, `${label}.smaps-summary.txt`), lines.join('\n') + '\n');
  if (metricsOrigin) {
    const text = await (await fetch(`${metricsOrigin}/metrics`)).text();
    writeFileSync(join(dir, `${label}.metrics.txt`), text.split('\n').filter((l) => /^(nodejs_heap|nodejs_external|process_resident|nodejs_active)/.test(l)).join('\n') + '\n');
  }
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (cmdline.includes('--heapsnapshot-signal=SIGUSR2')) {
    const diagDir = /--diagnostic-dir=([^\0]+)/.exec(cmdline)?.[1] ?? readlinkSync(`/proc/${pid}/cwd`);
    const before = new Set(existsSync(diagDir) ? readdirSync(diagDir) : []);
    process.kill(pid, 'SIGUSR2');
    // The file is written in one go by the agent's main thread; done once its size stops changing.
    let last = -1;
    await waitFor('heap snapshot written', () => {
      const snap = readdirSync(diagDir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
      if (!snap) return false;
      const size = statSync(join(diagDir, snap)).size;
      const done = size > 0 && size === last;
      last = size;
      return done;
    }, { timeoutMs: 120_000, intervalMs: 1000 });
  }
}

/**
 * BENCH_P4_HOLD=1 with BENCH_P4_DUMP=dir: P4 waits, with its agent running at full load, until `dir/hold` is
 * removed (at most an hour), for a look at the live process (gdb, /proc, the inspector).
 */
export async function holdWhileFileExists(dir: string, log: (msg: string) => void): Promise<void> {
  const file = join(dir, 'hold');
  writeFileSync(file, `${process.pid}\n`);
  log(`P4: holding the agent at load until ${file} is removed`);
  await waitFor('hold file removed', () => !existsSync(file), { timeoutMs: 3_600_000, intervalMs: 1000 });
}
