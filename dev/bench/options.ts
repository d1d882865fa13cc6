/** `make bench` flags. `--smoke` shrinks everything for `make test`; any flag given explicitly wins. */

export const SECTIONS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'SOAK'] as const;
export type SectionId = (typeof SECTIONS)[number];

export interface BenchOptions {
  smoke: boolean;
  out: string;
  /** A Markdown file whose `bench:begin`/`bench:end` block gets this run's goals (`make bench`: README.md). */
  updateReadme?: string;
  only: SectionId[];
  /** P1: concurrency levels, measuring window and warm-up per point. */
  concurrency: number[];
  durationMs: number;
  warmupMs: number;
  /** P2: sequential cache misses sampled, Azure AD latency, concurrent first requests. */
  misses: number;
  aadLatencyMs: number;
  singleFlight: number;
  /** P3: PodIdentity counts; ARM latency; time limit per N. */
  p3N: number[];
  armLatencyMs: number;
  p3TimeoutMs: number;
  /** P3 Node mode: pods, scale sets, identities. */
  nodePods: number;
  nodeIdentities: number;
  /** P4: pods on the agent's node and PodIdentities in the cluster (agent); PodIdentities and pods (operator). */
  agentPods: number;
  agentIdentities: number;
  operatorIdentities: number;
  operatorPods: number;
  /** P4: both halves, or only the agent's (no operator, no import table: a quick agent memory check). */
  p4: 'both' | 'agent';
  /** P6: Pending pods on other nodes for the new-connection measurement at cluster scale. */
  crowdPods: number;
  /** Soak length; 0 skips it. */
  soakMs: number;
}

const FULL: Omit<BenchOptions, 'smoke' | 'out' | 'only' | 'p4'> = {
  concurrency: [1, 16, 64],
  durationMs: 10_000,
  warmupMs: 2_000,
  misses: 200,
  aadLatencyMs: 20,
  singleFlight: 100,
  p3N: [100, 500, 1000],
  armLatencyMs: 20,
  p3TimeoutMs: 300_000,
  nodePods: 500,
  nodeIdentities: 50,
  agentPods: 110,
  agentIdentities: 1000,
  operatorIdentities: 1000,
  operatorPods: 5000,
  crowdPods: 10_000,
  soakMs: 300_000,
};

const SMOKE: typeof FULL = {
  concurrency: [1, 16, 64],
  durationMs: 300,
  warmupMs: 100,
  misses: 10,
  aadLatencyMs: 20,
  singleFlight: 100,
  p3N: [10],
  armLatencyMs: 20,
  p3TimeoutMs: 60_000,
  nodePods: 10,
  nodeIdentities: 2,
  agentPods: 5,
  agentIdentities: 10,
  operatorIdentities: 10,
  operatorPods: 20,
  crowdPods: 20,
  soakMs: 0,
};

type NumericKey = { [K in keyof typeof FULL]: (typeof FULL)[K] extends number ? K : never }[keyof typeof FULL];
const NUMERIC: Record<string, NumericKey> = {
  'duration-ms': 'durationMs',
  'warmup-ms': 'warmupMs',
  misses: 'misses',
  'aad-latency-ms': 'aadLatencyMs',
  'single-flight': 'singleFlight',
  'arm-latency-ms': 'armLatencyMs',
  'p3-timeout-ms': 'p3TimeoutMs',
  'node-pods': 'nodePods',
  'node-identities': 'nodeIdentities',
  'agent-pods': 'agentPods',
  'agent-identities': 'agentIdentities',
  'operator-identities': 'operatorIdentities',
  'operator-pods': 'operatorPods',
  'crowd-pods': 'crowdPods',
  'soak-ms': 'soakMs',
};
const LISTS: Record<string, 'concurrency' | 'p3N'> = { concurrency: 'concurrency', 'p3-n': 'p3N' };

export function usage(): string {
  return [
    'usage: node --import tsx dev/bench/main.ts [flags]',
    '  --smoke                 tiny sizes and ~2 s of load (make test); soak skipped unless --soak-ms is given',
    '  --out DIR               report directory (default bench-results)',
    '  --update-readme FILE    replace the <!-- bench:begin --> … <!-- bench:end --> block of FILE with this run\'s goals',
    `  --only LIST             sections to run, from ${SECTIONS.join(',')} (others are reported as skipped)`,
    '  --concurrency 1,16,64   P1 concurrency levels',
    '  --p3-n 100,500,1000     P3 PodIdentity counts',
    '  --p4 both|agent         P4: both halves (default), or the agent\'s RSS alone (no operator, no import table)',
    ...Object.keys(NUMERIC).map((k) => `  --${k.padEnd(22)}${String(FULL[NUMERIC[k]!])} full / ${String(SMOKE[NUMERIC[k]!])} smoke`),
  ].join('\n');
}

export function parseOptions(argv: string[]): BenchOptions {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${usage()}`);
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (name === 'smoke' || name === 'help') {
      flags.set(name, 'true');
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    flags.set(name, value);
  }
  if (flags.has('help')) {
    process.stdout.write(usage() + '\n');
    process.exit(0);
  }
  const smoke = flags.get('smoke') === 'true';
  const opts: BenchOptions = { smoke, out: flags.get('out') ?? 'bench-results', only: [...SECTIONS], p4: 'both', ...(smoke ? SMOKE : FULL) };
  for (const [name, value] of flags) {
    if (name === 'smoke' || name === 'out') continue;
    if (name === 'update-readme') {
      opts.updateReadme = value;
      continue;
    }
    if (name === 'p4') {
      if (value !== 'both' && value !== 'agent') throw new Error(`--p4: both or agent, got ${value}`);
      opts.p4 = value;
    } else if (name === 'only') {
      const ids = value.split(',').map((s) => s.trim().toUpperCase());
      for (const id of ids) if (!(SECTIONS as readonly string[]).includes(id)) throw new Error(`--only: unknown section ${id} (${SECTIONS.join(', ')})`);
      opts.only = ids as SectionId[];
    } else if (name in NUMERIC) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: a whole number, got ${value}`);
      opts[NUMERIC[name]!] = n;
    } else if (name in LISTS) {
      const list = value.split(',').map(Number);
      if (list.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`--${name}: comma-separated positive whole numbers, got ${value}`);
      opts[LISTS[name]!] = list;
    } else throw new Error(`unknown flag --${name}\n${usage()}`);
  }
  return opts;
}
