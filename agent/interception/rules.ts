/**
 * The interception rules, as pure functions: what our chains must contain, how to tell whether the live
 * tables match, and the iptables-restore input that makes them match. No I/O here.
 *
 * Rule lines are written exactly as iptables-save prints them (nft and legacy print the same), so drift is
 * a plain comparison of lines.
 */

export const IMDS_IP = '169.254.169.254';
export const IMDS_PORT = 80;

/** nat: pod traffic (PREROUTING) to IMDS → the agent. */
export const NAT_CHAIN = 'PODID-IMDS';
/** nat: node-local traffic (OUTPUT), only with the hostNetwork opt-in. */
export const NAT_OUTPUT_CHAIN = 'PODID-IMDS-OUTPUT';
/** filter: anything that was headed for IMDS and was not delivered to the agent is refused (FORWARD). */
export const FILTER_CHAIN = 'PODID-IMDS-FALLBACK';
/** filter: the same for node-local traffic (OUTPUT), only with the hostNetwork opt-in. */
export const FILTER_OUTPUT_CHAIN = 'PODID-IMDS-OUTPUT-FALLBACK';

export const OUR_CHAINS = [NAT_CHAIN, NAT_OUTPUT_CHAIN, FILTER_CHAIN, FILTER_OUTPUT_CHAIN] as const;

export interface InterceptionSpec {
  /** DNAT target. */
  agentIp: string;
  agentPort: number;
  interceptHostNetwork: boolean;
  /** Owner match that exempts the agent's own upstream calls (OUTPUT only). */
  excludeUid?: number;
  excludeGid?: number;
}

type Table = 'nat' | 'filter';

interface ChainSpec {
  table: Table;
  chain: string;
  /** Built-in chain that jumps to it, as its first rule. */
  from: string;
  rules: string[];
}

function ownerExemptions(spec: InterceptionSpec, chain: string): string[] {
  const out: string[] = [];
  if (spec.excludeUid !== undefined) out.push(`-A ${chain} -m owner --uid-owner ${spec.excludeUid} -j RETURN`);
  if (spec.excludeGid !== undefined) out.push(`-A ${chain} -m owner --gid-owner ${spec.excludeGid} -j RETURN`);
  return out;
}

/** The chains we own and exactly what each must hold. Chains absent from the list must not exist. */
export function desiredChains(spec: InterceptionSpec): ChainSpec[] {
  const dnat = (chain: string) => `-A ${chain} -d ${IMDS_IP}/32 -p tcp -m tcp --dport ${IMDS_PORT} -j DNAT --to-destination ${spec.agentIp}:${spec.agentPort}`;
  const chains: ChainSpec[] = [
    { table: 'nat', chain: NAT_CHAIN, from: 'PREROUTING', rules: [dnat(NAT_CHAIN)] },
    {
      table: 'filter',
      chain: FILTER_CHAIN,
      from: 'FORWARD',
      // ctorigdst, not -d: a flow that some other rule DNATed away from IMDS is refused too. Flows DNATed to
      // the agent are delivered locally (INPUT) and never pass FORWARD.
      rules: [
        `-A ${FILTER_CHAIN} -p tcp -m conntrack --ctorigdst ${IMDS_IP} -j REJECT --reject-with tcp-reset`,
        `-A ${FILTER_CHAIN} -m conntrack --ctorigdst ${IMDS_IP} -j REJECT --reject-with icmp-port-unreachable`,
      ],
    },
  ];
  if (spec.interceptHostNetwork) {
    chains.push({ table: 'nat', chain: NAT_OUTPUT_CHAIN, from: 'OUTPUT', rules: [...ownerExemptions(spec, NAT_OUTPUT_CHAIN), dnat(NAT_OUTPUT_CHAIN)] });
    chains.push({
      table: 'filter',
      chain: FILTER_OUTPUT_CHAIN,
      from: 'OUTPUT',
      rules: [
        ...ownerExemptions(spec, FILTER_OUTPUT_CHAIN),
        `-A ${FILTER_OUTPUT_CHAIN} -d ${IMDS_IP}/32 -p tcp -m tcp --dport ${IMDS_PORT} -j REJECT --reject-with tcp-reset`,
      ],
    });
  }
  return chains;
}

/** What iptables-save shows of one table: declared chains and every `-A` line per chain, in order. */
export interface TableState {
  chains: Set<string>;
  rules: Map<string, string[]>;
}

export type TablesState = Record<Table, TableState>;

/** Parses iptables-save output (all tables or some). Unknown tables are ignored. */
export function parseSave(text: string): TablesState {
  const state: TablesState = { nat: emptyTable(), filter: emptyTable() };
  let current: TableState | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) current = state[line.slice(1) as Table];
    else if (!current || line.startsWith('#') || line === 'COMMIT' || line === '') continue;
    else if (line.startsWith(':')) current.chains.add(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1]!;
      let list = current.rules.get(chain);
      if (!list) current.rules.set(chain, (list = []));
      list.push(line);
    }
  }
  return state;
}

function emptyTable(): TableState {
  return { chains: new Set(), rules: new Map() };
}

const jumpLine = (from: string, chain: string) => `-A ${from} -j ${chain}`;

/** Every way the live tables differ from the spec; empty means in sync. */
export function findDrift(spec: InterceptionSpec, state: TablesState): string[] {
  const problems: string[] = [];
  const desired = desiredChains(spec);
  for (const c of desired) {
    const table = state[c.table];
    if (!table.chains.has(c.chain)) {
      problems.push(`${c.table}/${c.chain}: chain missing`);
      continue;
    }
    const have = table.rules.get(c.chain) ?? [];
    if (have.join('\n') !== c.rules.join('\n')) problems.push(`${c.table}/${c.chain}: rules differ`);
    const fromRules = table.rules.get(c.from) ?? [];
    const jumps = fromRules.filter((r) => r === jumpLine(c.from, c.chain)).length;
    if (jumps !== 1) problems.push(`${c.table}/${c.from}: ${jumps} jumps to ${c.chain}, want 1`);
    else if (fromRules[0] !== jumpLine(c.from, c.chain)) problems.push(`${c.table}/${c.from}: jump to ${c.chain} is not the first rule`);
  }
  const wanted = new Set(desired.map((c) => `${c.table}/${c.chain}`));
  for (const table of ['nat', 'filter'] as const) {
    for (const chain of OUR_CHAINS) {
      if (state[table].chains.has(chain) && !wanted.has(`${table}/${chain}`)) problems.push(`${table}/${chain}: chain should not exist`);
    }
  }
  return problems;
}

/** Jumps to `chain` anywhere in the table, so they can be deleted (a chain can't be removed while referenced). */
function jumpsTo(table: TableState, chain: string): string[] {
  const out: string[] = [];
  for (const [from, rules] of table.rules) {
    if ((OUR_CHAINS as readonly string[]).includes(from)) continue;
    for (const r of rules) if (r === jumpLine(from, chain)) out.push(`-D ${from} -j ${chain}`);
  }
  return out;
}

/**
 * iptables-restore --noflush input that makes the live tables match the spec in one atomic commit per
 * table. Declaring a chain (`:NAME - [0:0]`) flushes it under --noflush, so re-applying never duplicates
 * rules; every existing jump is deleted and exactly one is inserted first. Chains we own that the spec no
 * longer wants (e.g. the hostNetwork opt-in was turned off) are removed.
 */
export function renderRestore(spec: InterceptionSpec, state: TablesState): string {
  const desired = desiredChains(spec);
  const out: string[] = [];
  for (const tableName of ['nat', 'filter'] as const) {
    const table = state[tableName];
    const mine = desired.filter((c) => c.table === tableName);
    const stale = OUR_CHAINS.filter((chain) => table.chains.has(chain) && !mine.some((c) => c.chain === chain));
    out.push(`*${tableName}`);
    for (const c of mine) out.push(`:${c.chain} - [0:0]`);
    for (const chain of stale) out.push(`:${chain} - [0:0]`);
    for (const c of mine) {
      out.push(...jumpsTo(table, c.chain));
      out.push(`-I ${c.from} 1 -j ${c.chain}`);
      out.push(...c.rules);
    }
    for (const chain of stale) {
      out.push(...jumpsTo(table, chain));
      out.push(`-X ${chain}`);
    }
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** iptables-restore --noflush input that removes every chain we own and every jump to it (uninstall). */
export function renderRemoval(state: TablesState): string {
  const out: string[] = [];
  for (const tableName of ['nat', 'filter'] as const) {
    const table = state[tableName];
    const present = OUR_CHAINS.filter((chain) => table.chains.has(chain));
    if (present.length === 0) continue;
    out.push(`*${tableName}`);
    for (const chain of present) out.push(`:${chain} - [0:0]`);
    for (const chain of present) out.push(...jumpsTo(table, chain));
    for (const chain of present) out.push(`-X ${chain}`);
    out.push('COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/** Only our chains and the jumps to them, in a stable order: what tests compare across restarts. */
export function ourRules(state: TablesState): string[] {
  const out: string[] = [];
  for (const tableName of ['nat', 'filter'] as const) {
    const table = state[tableName];
    for (const [from, rules] of [...table.rules].sort(([a], [b]) => a.localeCompare(b))) {
      for (const r of rules) {
        if ((OUR_CHAINS as readonly string[]).includes(from) || OUR_CHAINS.some((c) => r === jumpLine(from, c))) out.push(`${tableName}: ${r}`);
      }
    }
  }
  return out;
}
