/**
 * The report: sections of tables and notes, goals checked against measured figures, and the gaps (every
 * goal not met or not measured). Rendered as Markdown (with an SVG chart beside it) and as JSON.
 */
import { cpus, freemem, loadavg, totalmem } from 'node:os';

export type Cell = string | number | null;

export interface Table {
  title?: string;
  columns: string[];
  rows: Cell[][];
}

export interface Section {
  id: string;
  title: string;
  status: 'measured' | 'partial' | 'not measured' | 'skipped';
  /** Why a section (or part of it) was not measured. */
  reason?: string;
  tables: Table[];
  notes: string[];
  /** Raw figures for the JSON report. */
  data: Record<string, unknown>;
}

export interface Goal {
  section: string;
  name: string;
  target: string;
  /** The measured figure, or why there is none. */
  measured: string;
  /** null: not measured. */
  met: boolean | null;
}

export interface Machine {
  cores: number;
  cpuModel: string;
  nodeVersion: string;
  platform: string;
  memoryGiB: number;
  freeMemoryGiB: number;
  loadAverageAtStart: number[];
}

export interface Report {
  generatedAt: string;
  command: string;
  durationSeconds: number;
  machine: Machine;
  options: Record<string, unknown>;
  sections: Section[];
  goals: Goal[];
  gaps: Goal[];
  charts: string[];
}

export function machineInfo(): Machine {
  const list = cpus();
  return {
    cores: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    nodeVersion: process.version,
    platform: `${process.platform} ${process.arch}`,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    freeMemoryGiB: round(freemem() / 2 ** 30, 1),
    loadAverageAtStart: loadavg().map((v) => round(v, 2)),
  };
}

export function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function section(id: string, title: string): Section {
  return { id, title, status: 'measured', tables: [], notes: [], data: {} };
}

export function notMeasured(id: string, title: string, reason: string): Section {
  return { id, title, status: 'not measured', reason, tables: [], notes: [], data: {} };
}

export class GoalBook {
  readonly goals: Goal[] = [];

  check(sectionId: string, name: string, target: string, measured: string, met: boolean): void {
    this.goals.push({ section: sectionId, name, target, measured, met });
  }

  unmeasured(sectionId: string, name: string, target: string, why: string): void {
    this.goals.push({ section: sectionId, name, target, measured: `not measured: ${why}`, met: null });
  }
}

function cell(c: Cell): string {
  if (c === null) return '—';
  return String(c).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function renderTable(t: Table): string {
  const lines: string[] = [];
  if (t.title) lines.push(`**${t.title}**`, '');
  lines.push(`| ${t.columns.map(cell).join(' | ')} |`, `|${t.columns.map(() => '---').join('|')}|`);
  for (const row of t.rows) lines.push(`| ${row.map(cell).join(' | ')} |`);
  return lines.join('\n');
}

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  const m = r.machine;
  out.push('# Benchmark report', '');
  out.push(`Generated ${r.generatedAt} by \`${r.command}\` in ${r.durationSeconds} s.`, '');
  out.push(`Machine: **${m.cores} cores** (${m.cpuModel}), **Node ${m.nodeVersion}**, ${m.platform}, ${m.memoryGiB} GiB memory (${m.freeMemoryGiB} GiB free), load average at start ${m.loadAverageAtStart.join(' / ')}.`, '');
  out.push(
    'Every figure that is checked against a goal is a ratio against a baseline measured in this same run, or an absolute figure the issue sets a limit on; other absolute numbers are context. The machine is shared, so expect noise between runs.',
    '',
  );
  out.push('## Goals', '');
  out.push(renderTable({ columns: ['Section', 'Goal', 'Target', 'Measured', 'Met'], rows: r.goals.map((g) => [g.section, g.name, g.target, g.measured, g.met === null ? 'not measured' : g.met ? 'yes' : '**NO**']) }), '');
  out.push('## Gaps', '');
  if (r.gaps.length === 0) out.push('None: every goal was measured and met.', '');
  else for (const g of r.gaps) out.push(`- **${g.section} ${g.name}** (target ${g.target}): ${g.measured}`);
  out.push('');
  for (const s of r.sections) {
    out.push(`## ${s.id}: ${s.title}`, '');
    if (s.status !== 'measured') out.push(`_Status: ${s.status}${s.reason ? ` — ${s.reason}` : ''}_`, '');
    for (const t of s.tables) out.push(renderTable(t), '');
    for (const n of s.notes) out.push(`- ${n}`);
    if (s.notes.length) out.push('');
  }
  if (r.charts.length) {
    out.push('## Charts', '');
    for (const c of r.charts) out.push(`![${c}](${c})`, '');
  }
  out.push('## Options', '', '```json', JSON.stringify(r.options, null, 2), '```', '');
  return out.join('\n');
}

/** A small line chart as SVG: x is N (log scale when it spans a decade), one line per series. */
export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: { name: string; points: [number, number][] }[]): string {
  const W = 640;
  const H = 360;
  const pad = { l: 70, r: 160, t: 40, b: 50 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const log = xMin > 0 && xMax / xMin >= 10;
  const fx = (x: number) => (log ? Math.log10(x) : x);
  const [x0, x1] = [fx(xMin), fx(xMax) === fx(xMin) ? fx(xMin) + 1 : fx(xMax)];
  const yMax = Math.max(...ys) * 1.1 || 1;
  const px = (x: number) => pad.l + ((fx(x) - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const py = (y: number) => H - pad.b - (y / yMax) * (H - pad.t - pad.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - pad.r / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="black"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="black"/>`,
    `<text x="${(W - pad.r + pad.l) / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}${log ? ' (log scale)' : ''}</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">${esc(yLabel)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    parts.push(`<text x="${pad.l - 6}" y="${py(y) + 4}" text-anchor="end">${round(y, y < 10 ? 2 : 0)}</text>`);
    parts.push(`<line x1="${pad.l}" y1="${py(y)}" x2="${W - pad.r}" y2="${py(y)}" stroke="#ddd"/>`);
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) parts.push(`<text x="${px(x)}" y="${H - pad.b + 16}" text-anchor="middle">${x}</text>`);
  series.forEach((s, i) => {
    const color = colors[i % colors.length]!;
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, y]) => `${px(x)},${py(y)}`).join(' ')}"/>`);
    for (const [x, y] of pts) parts.push(`<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${color}"/>`);
    parts.push(`<rect x="${W - pad.r + 12}" y="${pad.t + i * 20 - 9}" width="10" height="10" fill="${color}"/>`);
    parts.push(`<text x="${W - pad.r + 28}" y="${pad.t + i * 20}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
