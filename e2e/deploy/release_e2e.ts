/**
 * What a release is made of, held together: one version (package.json) in both programs' --version, the image
 * tags the manifests deploy and the changelog; the licence package.json names; production dependencies that
 * are exactly what the shipped programs import; and the programs' command lines an operator of the cluster uses.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { kustomize, repoRoot } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  version: string;
  license: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** Runs a program's entry point the way `make run` does (tsx), returning its exit code and output. */
async function cli(entry: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000, env: { ...process.env, PODIDENTITY_COMMIT: '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'testing' ? [] : sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('_test.ts') && !name.endsWith('_e2e.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The npm package a bare import specifier names (`@scope/name/sub` → `@scope/name`). */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('node:') || builtinModules.includes(specifier)) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

describe('release', () => {
  test('operator --help and -h print the usage and exit 0', async () => {
    const flags = ['--help', '-h'];
    const results = await Promise.all(flags.map((flag) => cli('operator/main.ts', [flag])));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `${flags[i]}: ${r.stderr}`);
      assert.match(r.stdout, /--subscription-id/);
    }
  });

  test('agent --help, -h and help print the usage and exit 0', async () => {
    const argv = [['--help'], ['-h'], ['help']];
    const results = await Promise.all(argv.map((args) => cli('agent/main.ts', args)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `${argv[i]!.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /--node-name/);
    }
  });

  test('both programs report package.json\'s version with --version', async () => {
    const calls = [['operator/main.ts', ['--version']], ['agent/main.ts', ['--version']], ['agent/main.ts', ['version']]] as const;
    const results = await Promise.all(calls.map(([entry, args]) => cli(entry, [...args])));
    for (const [i, [entry]] of calls.entries()) {
      const r = results[i]!;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `pod-identity ${entry.split('/')[0]} ${pkg.version} (node ${process.version}, commit unknown)\n`);
    }
  });

  test('the manifests deploy images tagged with package.json\'s version', async () => {
    const { objects } = await kustomize('config/default');
    const images = objects.flatMap((o) => (o.kind === 'Deployment' || o.kind === 'DaemonSet' ? (o.spec.template.spec.containers as { image: string }[]).map((c) => c.image) : []));
    assert.equal(images.length, 2);
    for (const image of images) assert.match(image, new RegExp(`^ghcr\\.io/podidentity-dev/(operator|agent):${pkg.version.replace(/\./g, '\\.')}$`));
  });

  test('the changelog follows Keep a Changelog and has a section for this version', () => {
    const changelog = readFileSync(join(repoRoot, 'CHANGELOG.md'), 'utf8');
    assert.match(changelog, /keepachangelog\.com/);
    assert.match(changelog, /^## \[Unreleased\]$/m);
    assert.match(changelog, new RegExp(`^## \\[${pkg.version.replace(/\./g, '\\.')}\\] - \\d{4}-\\d{2}-\\d{2}$`, 'm'));
    assert.match(changelog, new RegExp(`^\\[${pkg.version.replace(/\./g, '\\.')}\\]: `, 'm'), 'a link for the version');
  });

  test('LICENSE is the licence package.json names', () => {
    assert.equal(pkg.license, 'MIT');
    assert.match(readFileSync(join(repoRoot, 'LICENSE'), 'utf8'), /^MIT License\n[\s\S]*Permission is hereby granted, free of charge/);
  });

  test('production dependencies are exactly what the shipped programs import (jose is the emulator\'s)', () => {
    const imported = new Set<string>();
    for (const file of ['lib', 'operator', 'agent'].flatMap((d) => sourceFiles(join(repoRoot, d)))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)|^import\s+'([^']+)'/gm)) {
        const name = packageOf(m[1] ?? m[2] ?? m[3]!);
        if (name) {
          assert.ok(pkg.dependencies[name], `${relative(repoRoot, file)} imports ${name}, which is not a production dependency`);
          imported.add(name);
        }
      }
    }
    assert.deepEqual(Object.keys(pkg.dependencies).filter((d) => !imported.has(d)), [], 'production dependencies nothing shipped imports');
    assert.equal(pkg.dependencies.jose, undefined);
    assert.ok(pkg.devDependencies.jose, 'the emulator still gets jose');
  });

  test('the documented image builds carry SBOM and provenance attestations and the commit', () => {
    for (const file of ['Dockerfile.operator', 'Dockerfile.agent', 'config/README.md']) {
      const text = readFileSync(join(repoRoot, file), 'utf8');
      const builds = text.split('\n').map((l, i, all) => (l.includes('docker buildx build') ? all.slice(i, i + 3).join(' ') : '')).filter(Boolean);
      assert.ok(builds.length > 0, `${file} documents a build`);
      for (const b of builds) {
        assert.match(b, /--sbom=true/, `${file}: ${b}`);
        assert.match(b, /--provenance=mode=max/, `${file}: ${b}`);
        assert.match(b, /--build-arg COMMIT=/, `${file}: ${b}`);
      }
    }
  });
});
