/**
 * Compiles the processes under test (the agent, and the baseline server and probes beside it) to plain
 * JavaScript first, so they run as production does (`node dist/agent/main.js`) rather than under the tsx
 * loader, which adds tens of MB of RSS and start-up work. Output goes to node_modules/.cache so that the
 * compiled files still resolve the project's node_modules.
 */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** Per run, so two runs in one tree (a smoke test during `make bench`) never delete each other's build. */
export const BUILD_DIR = join(REPO, 'node_modules/.cache/podid-bench', `run-${process.pid}`);

const ENTRIES = ['agent/main.ts', 'dev/bench/baseline-server.ts', 'dev/bench/verify-floor-server.ts', 'dev/bench/loadgen.ts', 'dev/bench/miss-probe.ts', 'operator/main.ts'];

/** The compiled path of a repository-relative .ts entry. */
export function compiled(entry: string): string {
  return join(BUILD_DIR, entry.replace(/\.ts$/, '.js'));
}

export function removeRuntime(): void {
  rmSync(BUILD_DIR, { recursive: true, force: true });
}

export async function buildRuntime(): Promise<void> {
  removeRuntime();
  // The operator is compiled when it exists in this tree; its sections report "not measured" otherwise.
  const entries = ENTRIES.filter((e) => existsSync(join(REPO, e)));
  const tsc = join(REPO, 'node_modules/typescript/bin/tsc');
  // --noCheck: `make typecheck` is where types are checked; this is emit only, with the project's settings.
  const args = [
    tsc, '--ignoreConfig', ...entries, '--outDir', BUILD_DIR, '--rootDir', '.', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--target', 'ES2024', '--skipLibCheck', '--types', 'node', '--verbatimModuleSyntax', '--noCheck', '--sourceMap', 'false',
  ];
  try {
    await promisify(execFile)(process.execPath, args, { cwd: REPO, timeout: 300_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`compiling ${entries.join(', ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
  }
}
