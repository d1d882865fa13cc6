import { execFile, spawn } from 'node:child_process';

/** The three operations interception needs; the real one runs iptables binaries, tests use a fake. */
export interface IptablesBackend {
  readonly binary: string;
  save(): Promise<string>;
  /** iptables-restore --noflush with the xtables lock. */
  restore(input: string): Promise<void>;
  /** Deletes conntrack entries to IMDS so flows opened before the rules can't bypass them. False if conntrack is absent. */
  flushConntrack(ip: string, port: number): Promise<boolean>;
}

function run(cmd: string, args: string[], input?: string, timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (child.stdin) {
      // A command that exits without reading its input must not crash the agent with EPIPE; its exit code says what happened.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

async function exists(cmd: string): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, ['--version'], (err) => resolve(!err || (err as { code?: unknown }).code !== 'ENOENT')));
}

export class CommandIptables implements IptablesBackend {
  constructor(readonly binary: string) {}

  async save(): Promise<string> {
    const res = await run(`${this.binary}-save`, []);
    if (res.code !== 0) throw new Error(`${this.binary}-save exited ${res.code}: ${res.stderr.trim()}`);
    return res.stdout;
  }

  async restore(input: string): Promise<void> {
    // -w: wait for the xtables lock so we never interleave with kube-proxy or the CNI.
    const res = await run(`${this.binary}-restore`, ['-w', '5', '--noflush'], input);
    if (res.code !== 0) throw new Error(`${this.binary}-restore exited ${res.code}: ${res.stderr.trim()}`);
  }

  async flushConntrack(ip: string, port: number): Promise<boolean> {
    let res;
    try {
      res = await run('conntrack', ['-D', '-d', ip, '-p', 'tcp', '--dport', String(port)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    // conntrack exits 1 when nothing matched: that is success for us.
    if (res.code !== 0 && !/0 flow entries/.test(res.stderr)) throw new Error(`conntrack -D exited ${res.code}: ${res.stderr.trim()}`);
    return true;
  }
}

function countRules(save: string): number {
  return save.split('\n').filter((l) => l.startsWith('-A ')).length;
}

/**
 * Picks iptables-nft or iptables-legacy. `auto` follows the node's other users of iptables (kube-proxy, the
 * CNI), like Kubernetes' iptables-wrapper: whichever backend already holds more rules; nft when neither does.
 * Mixing backends would put our rules in tables the kernel evaluates separately from theirs.
 */
export async function selectIptables(mode: 'auto' | 'nft' | 'legacy', explicitBinary?: string): Promise<IptablesBackend> {
  if (explicitBinary) return new CommandIptables(explicitBinary);
  if (mode === 'nft') return new CommandIptables('iptables-nft');
  if (mode === 'legacy') return new CommandIptables('iptables-legacy');
  const [hasNft, hasLegacy] = await Promise.all([exists('iptables-nft-save'), exists('iptables-legacy-save')]);
  if (!hasNft && !hasLegacy) return new CommandIptables('iptables');
  if (!hasLegacy) return new CommandIptables('iptables-nft');
  if (!hasNft) return new CommandIptables('iptables-legacy');
  const [nft, legacy] = await Promise.all([new CommandIptables('iptables-nft').save().catch(() => ''), new CommandIptables('iptables-legacy').save().catch(() => '')]);
  return new CommandIptables(countRules(legacy) > countRules(nft) ? 'iptables-legacy' : 'iptables-nft');
}
