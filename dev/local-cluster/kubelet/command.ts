/**
 * A container's command line as Kubernetes and the image together compose it, and the same command
 * line mapped onto this machine (node → this Node.js, the image's /app → a staged copy of the image's files).
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { ImageConfig } from './image.js';

export interface ContainerCommand {
  command?: string[];
  args?: string[];
}

/**
 * `$(VAR)` references as Kubernetes expands them in env values, command and args: a defined variable is
 * replaced, an undefined reference is left as written, and `$$` is a literal `$` (so `$$(VAR)` stays `$(VAR)`).
 */
export function expandReferences(text: string, lookup: (name: string) => string | undefined): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) => {
    if (name === undefined) return '$';
    return lookup(name) ?? whole;
  });
}

/**
 * Kubernetes' rule: `command` replaces the image's ENTRYPOINT and drops its CMD; `args` replaces CMD.
 * `$(VAR)` references in both are expanded from the container's environment.
 */
export function composeCommand(container: ContainerCommand, image: Pick<ImageConfig, 'entrypoint' | 'cmd'>, env: Record<string, string> = {}): string[] {
  const expand = (xs: string[]) => xs.map((x) => expandReferences(x, (name) => env[name]));
  const argv = container.command !== undefined ? [...expand(container.command), ...expand(container.args ?? [])] : [...image.entrypoint, ...(container.args !== undefined ? expand(container.args) : image.cmd)];
  if (argv.length === 0) throw new Error('the container has no command: neither the image nor the manifest sets one');
  return argv;
}

/** Commands the images provide beyond what a Debian host has on PATH. */
const IMAGE_COMMANDS = new Set(['node', 'docker-entrypoint.sh', '/nodejs/bin/node', '/usr/local/bin/node']);

function onPath(command: string, path: string): boolean {
  if (IMAGE_COMMANDS.has(command)) return true;
  const candidates = command.includes('/') ? [command] : path.split(delimiter).map((dir) => join(dir, command));
  return candidates.some((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * What the process that the container starts finally runs. The node images' `docker-entrypoint.sh` runs
 * `node "$@"` when its first argument starts with `-` or is no command on PATH, and `"$@"` otherwise.
 */
export function resolveEntrypointScript(argv: string[], path: string): string[] {
  const [first, ...rest] = argv;
  if (first !== 'docker-entrypoint.sh' && first !== '/usr/local/bin/docker-entrypoint.sh') return argv;
  const next = rest[0];
  if (next === undefined) throw new Error('docker-entrypoint.sh with no arguments exits without running anything');
  if (next.startsWith('-') || !onPath(next, path)) return ['node', ...rest];
  return rest;
}

export interface HostMapping {
  /** The Node.js binary that stands in for the image's node. */
  node: string;
  /** Image directory → local directory (e.g. /app → a staged copy of the image's /app). */
  directories: Record<string, string>;
}

/** The image's command line on this machine. Image paths keep their meaning: /app/x is the staged /app/x. */
export function toHost(argv: string[], mapping: HostMapping): string[] {
  const mapPath = (arg: string): string => {
    for (const [from, to] of Object.entries(mapping.directories)) {
      if (arg === from) return to;
      if (arg.startsWith(`${from}/`)) return to + arg.slice(from.length);
    }
    return arg;
  };
  const [first, ...rest] = argv;
  const program = first === 'node' || first === '/nodejs/bin/node' || first === '/usr/local/bin/node' ? mapping.node : mapPath(first!);
  return [program, ...rest.map(mapPath)];
}
