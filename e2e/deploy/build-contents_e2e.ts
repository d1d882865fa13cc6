/**
 * What the build compiles and the images are built from: the programs' own modules, never a test, a test
 * double or a module nothing runs. The rule: tests are `*_test.ts` / `*_e2e.ts`, and everything only tests
 * use (fakes, harnesses, fixtures) lives in a `testing/` folder; tsconfig.build.json and .dockerignore
 * exclude both, and e2e/kubelet builds dist/ with the same rule.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import ts from 'typescript';
import { repoRoot } from '../../dev/local-cluster/kubelet/render.js';

/** The programs the build serves: the two images' ENTRYPOINTs (see the Dockerfiles) and `make migrate`. */
const ENTRY_POINTS = ['agent/main.ts', 'operator/main.ts', 'operator/migrate/main.ts'];

const isTestOnly = (file: string): boolean => /_(test|e2e)\.ts$/.test(file) || file.split('/').includes('testing');

function buildConfig(): ts.ParsedCommandLine {
  const config = ts.getParsedCommandLineOfConfigFile(join(repoRoot, 'tsconfig.build.json'), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')),
  });
  assert.ok(config, 'tsconfig.build.json parses');
  return config;
}

/** The repository's own source files a program compiles (what `tsc --listFilesOnly` lists, minus libraries). */
function compiledSources(program: ts.Program): string[] {
  return program.getSourceFiles()
    .map((f) => relative(repoRoot, f.fileName).split(sep).join('/'))
    .filter((f) => !f.startsWith('..') && !f.includes('node_modules/') && !f.endsWith('.d.ts'))
    .sort();
}

describe('build contents', () => {
  const config = buildConfig();
  const build = ts.createProgram(config.fileNames, config.options);
  const built = compiledSources(build);

  test('tsconfig.build.json compiles no test and no test double, even one a product module imports', () => {
    assert.ok(built.includes('operator/main.ts') && built.includes('agent/main.ts'), `the build compiles the programs: ${built.join(', ')}`);
    assert.deepEqual(built.filter(isTestOnly), []);
  });

  test('every module the build compiles is one a program imports (no test-only or dead module ships)', () => {
    const reachable = compiledSources(ts.createProgram(ENTRY_POINTS.map((f) => join(repoRoot, f)), config.options, undefined, build));
    assert.deepEqual(built.filter((f) => !reachable.includes(f)), []);
  });

  test('.dockerignore keeps tests and test doubles out of the image build context', () => {
    const rules = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const lastAllow = rules.findLastIndex((r) => r.startsWith('!'));
    for (const denied of ['**/*_test.ts', '**/*_e2e.ts', '**/testing/**']) {
      const at = rules.indexOf(denied);
      assert.ok(at > lastAllow, `${denied} is excluded after every allow rule (the last matching rule wins)`);
    }
  });
});
