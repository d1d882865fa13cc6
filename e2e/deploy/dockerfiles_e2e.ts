/**
 * Docker can't build here, so the Dockerfiles are checked by reading them: stages, base images, the user the
 * runtime stage runs as, the agent's tools, and that each entry point is a file the TypeScript build emits.
 * What each container runs once the manifests' command and args are applied: e2e/kubelet/command_e2e.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseStages, type Stage } from '../../dev/local-cluster/kubelet/image.js';
import { repoRoot } from '../../dev/local-cluster/kubelet/render.js';

function read(file: string): Stage[] {
  return parseStages(readFileSync(join(repoRoot, file), 'utf8'));
}

function last<T>(xs: T[]): T {
  const x = xs.at(-1);
  assert.ok(x !== undefined);
  return x;
}

function instructions(stage: Stage, op: string): string[] {
  return stage.instructions.filter((i) => i.op === op).map((i) => i.args);
}

/** `dist/operator/main.js` → `operator/main.ts`, which tsconfig.build.json compiles to that path. */
function sourceOf(distPath: string): string {
  const m = /^(?:\/app\/)?dist\/(.+)\.js$/.exec(distPath);
  assert.ok(m, `entry point ${distPath} is under dist/`);
  return `${m[1]}.ts`;
}

function checkCommon(stages: Stage[]): void {
  assert.ok(stages.length >= 2, 'multi-stage');
  const build = stages[0] as Stage;
  assert.equal(build.base, 'node:24-bookworm-slim', 'built with Node 24');
  assert.ok(instructions(build, 'RUN').some((r) => r.includes('npm ci')), 'reproducible install from the lockfile');
  assert.ok(instructions(build, 'RUN').some((r) => r.includes('tsc -p tsconfig.build.json')), 'compiled with the build tsconfig');
  const runtime = last(stages);
  assert.ok(!instructions(runtime, 'RUN').some((r) => /npm (ci|install)(?!.*--omit=dev)/.test(r)), 'no dev dependencies in the runtime stage');
  const copies = instructions(runtime, 'COPY');
  assert.ok(copies.some((c) => c.startsWith('--from=deps') && c.includes('node_modules')), 'runtime gets production node_modules from the deps stage');
  assert.ok(!copies.some((c) => /(^|\s)\.\s/.test(`${c} `) && !c.startsWith('--from')), 'the runtime stage never copies the whole build context');
}

describe('Dockerfiles', () => {
  test('operator: multi-stage, Node 24, distroless runtime as non-root', () => {
    const stages = read('Dockerfile.operator');
    checkCommon(stages);
    const runtime = last(stages);
    assert.equal(runtime.base, 'gcr.io/distroless/nodejs24-debian12:nonroot');
    assert.deepEqual(instructions(runtime, 'USER'), ['65532:65532']);
    // The program is the ENTRYPOINT and there is no CMD, so the Deployment's `args:` are the operator's flags
    // (e2e/kubelet/command_e2e.ts composes the Deployment with the image as Kubernetes does).
    assert.deepEqual(instructions(runtime, 'CMD'), [], 'no CMD: `args:` would replace it');
    const entry = JSON.parse(last(instructions(runtime, 'ENTRYPOINT'))) as string[];
    assert.equal(entry[0], '/nodejs/bin/node', "the distroless image's node");
    assert.ok(entry.slice(1, -1).every((arg) => arg.startsWith('--')), 'only node flags before the entry point');
    const source = sourceOf(last(entry));
    assert.ok(existsSync(join(repoRoot, source)), `the operator entry point ${source} exists`);
    // The operator Deployment runs as the same user the image declares.
    const deployment = readFileSync(join(repoRoot, 'config/manager/deployment.yaml'), 'utf8');
    assert.match(deployment, /runAsUser: 65532/);
  });

  test('agent: multi-stage, Node 24 slim with iptables and conntrack', () => {
    const stages = read('Dockerfile.agent');
    checkCommon(stages);
    const runtime = last(stages);
    assert.equal(runtime.base, 'node:24-bookworm-slim');
    const installs = instructions(runtime, 'RUN').join(' ');
    assert.match(installs, /apt-get install -y --no-install-recommends .*\biptables\b/);
    assert.match(installs, /\bconntrack\b/);
    assert.match(installs, /rm -rf \/var\/lib\/apt\/lists/);
    // Root is required for NET_ADMIN to be effective (no ambient capabilities); the file says so.
    assert.deepEqual(instructions(runtime, 'USER'), ['0:0']);
    assert.match(readFileSync(join(repoRoot, 'Dockerfile.agent'), 'utf8'), /only effective\s+# for UID 0/);
    const entry = JSON.parse(last(instructions(runtime, 'ENTRYPOINT'))) as string[];
    assert.equal(entry[0], 'node');
    assert.ok(entry.slice(1, -1).every((arg) => arg.startsWith('--')), 'only node flags between node and the entry point');
    const source = sourceOf(last(entry));
    assert.ok(existsSync(join(repoRoot, source)), `the agent entry point ${source} exists`);
    assert.deepEqual(JSON.parse(last(instructions(runtime, 'CMD'))), ['run'], 'the DaemonSet passes `run` explicitly too');
  });

  test('.dockerignore keeps keys, build output, dev/ and local state out of the context', () => {
    const rules = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(rules[0], '**', 'deny by default');
    for (const allowed of ['!package.json', '!package-lock.json', '!lib/**', '!operator/**', '!agent/**']) assert.ok(rules.includes(allowed), allowed);
    for (const denied of ['**/*.pem', '**/*.key']) assert.ok(rules.includes(denied), denied);
    assert.ok(!rules.some((r) => r.startsWith('!') && /node_modules|dist|\.git|e2e|dev/.test(r)), 'no test code, dev tools (dev/), build output or git state is let in');
  });
});
