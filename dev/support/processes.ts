import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/**
 * Every child a test starts is registered here and stopped by PID: on `stop()`, and as a last resort
 * when the test process exits or is interrupted, so a failing or cancelled test leaks nothing.
 */
const live = new Set<ManagedProcess>();

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Output captured so far (stdout and stderr interleaved), for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

export interface StartOptions extends SpawnOptions {
  /** Also append output to this file. */
  logFile?: string;
  /** Keep at most this many characters of output in memory. */
  keepOutput?: number;
}

export function startProcess(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const { logFile, keepOutput = 64_000, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
  if (child.pid === undefined) throw new Error(`${name}: failed to start ${command}`);
  const pid = child.pid;
  let buffered = '';
  const file = logFile ? createWriteStream(logFile, { flags: 'a' }) : undefined;
  const onData = (chunk: Buffer) => {
    buffered = (buffered + chunk.toString('utf8')).slice(-keepOutput);
    file?.write(chunk);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(managed);
      file?.end();
      resolve(code ?? signal ?? 'unknown');
    });
  });
  let exitedFlag = false;
  void exited.then(() => (exitedFlag = true));
  const managed: ManagedProcess = {
    name,
    child,
    pid,
    exited,
    output: () => buffered,
    kill: (signal) => {
      if (!exitedFlag) process.kill(pid, signal);
    },
    async stop(graceMs = 5_000) {
      if (exitedFlag) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.add(managed);
  return managed;
}

function killAllNow(): void {
  for (const proc of live) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

process.once('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, function lastResort() {
    // A program with its own handler (make run) shuts down gracefully and stops its children itself.
    if (process.listeners(signal).some((l) => l !== lastResort)) return;
    killAllNow();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}
