/**
 * The files an image holds, on this machine: what the Dockerfile's runtime stage COPYs, taken from the
 * compiled `dist/` (`tsc -p tsconfig.build.json`) and a production-only `npm ci --omit=dev` install. Both are
 * cached outside the repository, keyed on what they are made from (the sources, the lockfile), so a second
 * run with unchanged sources starts at once. Never tsx, never the repository's dev node_modules.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { readImageConfig, type ImageConfig } from './image.js';

const run = promisify(execFile);

export function cacheRoot(): string {
  return join(process.env['POD_IDENTITY_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'pod-identity-operator'), 'kubelet');
}

function hashFiles(repo: string, files: string[]): string {
  const h = createHash('sha256');
  for (const file of files.sort()) h.update(file).update('\0').update(readFileSync(join(repo, file))).update('\0');
  return h.digest('hex').slice(0, 16);
}

/** What tsconfig.build.json compiles: .ts under lib/, operator/, agent/, without tests and testing helpers. */
function buildInputs(repo: string): string[] {
  const out: string[] = ['tsconfig.base.json', 'tsconfig.build.json', 'package-lock.json'];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(repo, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'testing' && entry.name !== 'node_modules') walk(path);
      } else if (entry.name.endsWith('.ts') && !/_(test|e2e)\.ts$/.test(entry.name)) out.push(path);
    }
  };
  for (const dir of ['lib', 'operator', 'agent']) walk(dir);
  return out;
}

/** Builds into a temporary directory next to `final` and renames it into place: concurrent runs never see half a build. */
async function buildOnce(final: string, build: (tmp: string) => Promise<void>): Promise<string> {
  if (existsSync(final)) return final;
  mkdirSync(join(final, '..'), { recursive: true });
  const tmp = `${final}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await build(tmp);
    try {
      renameSync(tmp, final);
    } catch (err) {
      if (!existsSync(final)) throw err; // another run won the race
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return final;
}

/** `tsc -p tsconfig.build.json`, once per content of the sources. Returns the dist/ directory. */
export async function compiledDist(repo: string): Promise<string> {
  const dir = await buildOnce(join(cacheRoot(), `dist-${hashFiles(repo, buildInputs(repo))}`), async (tmp) => {
    try {
      await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.build.json'), '--outDir', join(tmp, 'dist')], { cwd: repo, timeout: 600_000 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`tsc -p tsconfig.build.json failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
    }
  });
  return join(dir, 'dist');
}

/** `npm ci --omit=dev`, offline from npm's cache, once per lockfile. Returns the node_modules directory. */
export async function productionModules(repo: string): Promise<string> {
  const dir = await buildOnce(join(cacheRoot(), `prod-modules-${hashFiles(repo, ['package.json', 'package-lock.json'])}`), async (tmp) => {
    mkdirSync(tmp, { recursive: true });
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(repo, f), join(tmp, f));
    try {
      await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], { cwd: tmp, timeout: 600_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`npm ci --omit=dev --offline failed (is npm's cache filled? \`make deps\` fills it): ${e.message}\n${e.stderr ?? ''}`, { cause: err });
    }
  });
  return join(dir, 'node_modules');
}

export interface StagedImage {
  dockerfile: string;
  config: ImageConfig;
  /** Local directory standing in for the image's WORKDIR. */
  root: string;
  /** Image directory → local directory. */
  directories: Record<string, string>;
}

/**
 * The image's WORKDIR with exactly what the runtime stage copies into it: `--from=build /src/dist/x` from the
 * compiled dist, `--from=deps /src/node_modules` the production modules (linked), package.json.
 */
export async function stageImage(repo: string, dockerfile: string): Promise<StagedImage> {
  const config = readImageConfig(repo, dockerfile);
  const [dist, modules] = await Promise.all([compiledDist(repo), productionModules(repo)]);
  const key = createHash('sha256').update(dist).update(modules).update(readFileSync(join(repo, dockerfile))).digest('hex').slice(0, 16);
  const root = await buildOnce(join(cacheRoot(), `image-${dockerfile.replace(/^Dockerfile\./, '')}-${key}`), async (tmp) => {
    mkdirSync(tmp, { recursive: true });
    for (const copy of config.copies) {
      const dest = relative(config.workdir, copy.dest);
      if (dest.startsWith('..')) throw new Error(`${dockerfile}: COPY to ${copy.dest}, outside WORKDIR ${config.workdir}, is not staged`);
      const target = join(tmp, dest);
      mkdirSync(join(target, '..'), { recursive: true });
      if (copy.from === 'deps' && copy.src === '/src/node_modules') symlinkSync(modules, target);
      else if (copy.from === 'build' && copy.src.startsWith('/src/dist/')) cpSync(join(dist, copy.src.slice('/src/dist/'.length)), target, { recursive: true });
      else if (copy.from === 'build' && copy.src === '/src/package.json') cpSync(join(repo, 'package.json'), target);
      else throw new Error(`${dockerfile}: COPY ${copy.from ? `--from=${copy.from} ` : ''}${copy.src} is not staged by dev/local-cluster/kubelet/program.ts`);
    }
    writeFileSync(join(tmp, '.staged-from'), `${dockerfile}\n`);
  });
  if (!statSync(root).isDirectory()) throw new Error(`${root} is not a directory`);
  return { dockerfile, config, root, directories: { [config.workdir]: root } };
}
