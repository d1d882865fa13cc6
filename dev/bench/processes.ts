/**
 * The processes the bench starts: the agent, the baseline server and the load generator. All go through
 * `startProcess` (stopped by PID, killed at exit). Servers log to files, not pipes, so the harness does not
 * spend CPU reading their output while it measures them.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, type ManagedProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { readImageConfig } from '../local-cluster/kubelet/image.js';
import { compiled, REPO } from './build.js';
import type { LoadResult, LoadSpec } from './loadgen.js';

export { REPO };

/**
 * How an image runs node, read from its Dockerfile so the bench cannot drift from it: the ENTRYPOINT's node
 * flags (between `node` and the script) and the runtime settings its ENV sets. PATH and values the build
 * fills in (`${COMMIT}`) are not runtime settings and stay the bench's own.
 */
export interface ImageRuntime {
  nodeFlags: string[];
  /** An undefined value unsets the variable. */
  env: Record<string, string | undefined>;
}

export function imageRuntime(dockerfile: 'Dockerfile.agent' | 'Dockerfile.operator'): ImageRuntime {
  const config = readImageConfig(REPO, dockerfile);
  const env = Object.fromEntries(Object.entries(config.env).filter(([key, value]) => key !== 'PATH' && !value.includes('${')));
  return { nodeFlags: config.entrypoint.slice(1, -1), env };
}

export const AGENT_IMAGE = imageRuntime('Dockerfile.agent');
export const OPERATOR_IMAGE = imageRuntime('Dockerfile.operator');

/** Starts the compiled `entry` (repository-relative .ts, see build.ts) with stdout+stderr appended to `logFile`. */

export function startNodeScript(name: string, entry: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env, nodeFlags: string[] = []): ManagedProcess {
  const fd = openSync(logFile, 'a');
  try {
    return startProcess(name, process.execPath, [...nodeFlags, compiled(entry), ...args], { cwd: REPO, env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd); // the child has its own copy
  }
}

export function tail(file: string, chars = 3000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

/** One memory field of a live process's /proc/<pid>/status (VmRSS, RssAnon, RssFile…), in bytes. */
function statusBytes(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Resident set size of a live process, from /proc (bytes). */
export function rssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/** A live process's RSS as the kernel splits it: anonymous memory, and file pages (the node binary, libraries). */
export function rssParts(pid: number): { anonymous: number; file: number } {
  return { anonymous: statusBytes(pid, 'RssAnon'), file: statusBytes(pid, 'RssFile') };
}

/**
 * RSS of a fresh `node` run as `image` runs it (node flags and env) after importing each module alone (and
 * of one importing nothing): what a library costs a process before it does any work. A row imports package
 * names or file URLs (the compiled agent's own modules). Each is the median of `rounds` fresh processes.
 */
export async function importRss(image: ImageRuntime, modules: { label: string; specifiers: string[] }[], rounds = 3): Promise<{ module: string; rssBytes: number }[]> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const out: { module: string; rssBytes: number }[] = [];
  for (const { label, specifiers } of [{ label: '(nothing)', specifiers: [] }, ...modules]) {
    const code = `${specifiers.map((m) => `await import(${JSON.stringify(m)});`).join(' ')} await new Promise((r) => setTimeout(r, 100)); process.stdout.write(String(process.memoryUsage().rss));`;
    const samples: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const { stdout } = await promisify(execFile)(process.execPath, [...image.nodeFlags, '--input-type=module', '-e', code], { cwd: REPO, timeout: 60_000, env: { ...process.env, ...image.env } });
      samples.push(Number(stdout));
    }
    out.push({ module: label, rssBytes: samples.sort((x, y) => x - y)[Math.floor(rounds / 2)]! });
  }
  return out;
}

/** User + system CPU seconds from a /proc stat file (Linux USER_HZ is 100). */
function statCpuSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the whole line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU time (user + system) a process has used so far, in seconds, all its threads. */
export function cpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** CPU seconds of a process's main (JavaScript) thread alone; the rest of cpuSeconds is V8's and libuv's helper threads. */
export function mainThreadCpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
}

/** Waits until `url` answers 200, failing early if the process exits. */
export async function waitHttpOk(what: string, url: string, proc: ManagedProcess, logFile: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    what,
    async () => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${proc.name} exited:\n${tail(logFile)}`);
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      if (res) await res.body?.cancel();
      return res?.status === 200;
    },
    { timeoutMs, intervalMs: 100 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${tail(logFile)}`);
  });
}

export interface BaselineServer {
  proc: ManagedProcess;
  origin: string;
}

export async function startBaseline(port: number, bodyFile: string, dir: string): Promise<BaselineServer> {
  const logFile = join(dir, 'baseline.log');
  const proc = startNodeScript('baseline', 'dev/bench/baseline-server.ts', [String(port), bodyFile], logFile);
  const origin = `http://127.0.0.1:${port}`;
  await waitHttpOk('baseline server', `${origin}/`, proc, logFile, 30_000);
  return { proc, origin };
}

export interface JsonRun<T> {
  result: Promise<T>;
  /** Asks the script to finish early (SIGTERM); `result` still resolves with what it measured. */
  finish(): Promise<T>;
}

/**
 * Starts a bench script that reads its JSON spec from env BENCH_SPEC (not argv: specs can carry the bench
 * API server's token, and argv is world-readable) and prints one JSON line at the end.
 */
export function startJsonScript<T>(name: string, entry: string, spec: unknown): JsonRun<T> {
  const proc = startProcess(name, process.execPath, [compiled(entry)], { cwd: REPO, keepOutput: 1_000_000, env: { ...process.env, BENCH_SPEC: JSON.stringify(spec) } });
  const result = proc.exited.then((code) => {
    const line = proc.output().trim().split('\n').reverse().find((l) => l.startsWith('{'));
    if (code !== 0 || !line) throw new Error(`${name} exited ${code}:\n${proc.output().slice(-3000)}`);
    return JSON.parse(line) as T;
  });
  return {
    result,
    finish() {
      proc.kill('SIGTERM');
      return result;
    },
  };
}

export function runJsonScript<T>(name: string, entry: string, spec: unknown): Promise<T> {
  return startJsonScript<T>(name, entry, spec).result;
}

/** One load run in its own process. */
export function runLoadgen(spec: LoadSpec): Promise<LoadResult> {
  return runJsonScript<LoadResult>('loadgen', 'dev/bench/loadgen.ts', spec);
}
