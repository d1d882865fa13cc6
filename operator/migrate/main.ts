/**
 * `pod-identity migrate`: aad-pod-identity YAML on stdin → PodIdentity YAML on stdout, warnings on stderr.
 *   node --import tsx operator/migrate/main.ts [--mode Node|Federated] < old.yaml > new.yaml
 * Exit 0 on success (even with warnings), 1 on bad input, 2 on bad usage.
 */
import { pathToFileURL } from 'node:url';
import { MODES, type Mode } from '../../lib/api/types.js';
import { migrate, MigrationInputError } from './migrate.js';

export const USAGE = `usage: pod-identity migrate [--mode Node|Federated] < aad-pod-identity.yaml > podidentities.yaml

Reads aadpodidentity.k8s.io/v1 AzureIdentity, AzureIdentityBinding and AzurePodIdentityException objects
(multi-document YAML, or the List that \`kubectl get ... -o yaml\` prints) and writes PodIdentities that adopt
the same identities for the same pods. Warnings go to stderr.

  --mode Node        assign identities to the nodes' scale sets, as aad-pod-identity did (default)
  --mode Federated   use workload identity federation instead (no scale-set assignment)
  -h, --help         show this help`;

export interface CliIo {
  stdin: AsyncIterable<string | Buffer> & { isTTY?: boolean };
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

class UsageError extends Error {}

function parseArgs(argv: string[]): { mode: Mode; help: boolean } {
  let mode: Mode = 'Node';
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') {
      help = true;
    } else if (arg === '--mode' || arg.startsWith('--mode=')) {
      const value = arg === '--mode' ? argv[++i] : arg.slice('--mode='.length);
      if (!MODES.includes(value as Mode)) throw new UsageError(`--mode must be one of ${MODES.join(', ')}, got ${JSON.stringify(value ?? '')}`);
      mode = value as Mode;
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return { mode, help };
}

async function readAll(stream: CliIo['stdin']): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
  return text;
}

/** The command, with its streams injected so `pod-identity migrate` and tests can run it. Returns the exit code. */
export async function runMigrate(argv: string[], io: CliIo): Promise<number> {
  let args: { mode: Mode; help: boolean };
  try {
    args = parseArgs(argv);
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (io.stdin.isTTY) {
    io.stderr.write(`error: reads aad-pod-identity YAML on stdin\n\n${USAGE}\n`);
    return 2;
  }
  const input = await readAll(io.stdin);
  if (input.trim() === '') {
    io.stderr.write('error: no input: pipe aad-pod-identity YAML on stdin\n');
    return 1;
  }
  try {
    const { output, warnings } = migrate(input, { mode: args.mode });
    for (const w of warnings) io.stderr.write(`warning: ${w}\n`);
    io.stdout.write(output);
    return 0;
  } catch (err) {
    if (err instanceof MigrationInputError) {
      io.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdin.setEncoding('utf8');
  process.exitCode = await runMigrate(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
}
