/**
 * The command line each shipped container really runs: the manifest's command/args composed with the image's
 * ENTRYPOINT/CMD (read from the Dockerfile, on top of its base image's), as Kubernetes does. Reading the two
 * apart is how `args:` without `command:` once turned the operator into `node --leader-elect …`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig as loadOperatorConfig } from '../../operator/config.js';
import { loadConfig as loadAgentConfig, parseFlags as parseAgentFlags } from '../../agent/config.js';
import { kustomize, repoRoot } from '../../dev/local-cluster/kubelet/render.js';
import { composeCommand, expandReferences, resolveEntrypointScript } from '../../dev/local-cluster/kubelet/command.js';
import { dockerfileFor, imageConfig, readImageConfig } from '../../dev/local-cluster/kubelet/image.js';
import { workloadContainers } from '../../dev/local-cluster/kubelet/manifests.js';
import { fieldValue, KUBELET_BACKOFF, restartDelay } from '../../dev/local-cluster/kubelet/kubelet.js';

const run = promisify(execFile);

/** The node options, the script and the program's arguments of a `node …` command line. */
function splitNodeCommand(argv: string[]): { nodeOptions: string[]; script?: string; programArgs: string[] } {
  const [program, ...rest] = argv;
  assert.ok(program === 'node' || program === '/nodejs/bin/node', `runs node, not ${program}`);
  const scriptAt = rest.findIndex((a) => !a.startsWith('-'));
  if (scriptAt < 0) return { nodeOptions: rest, programArgs: [] };
  return { nodeOptions: rest.slice(0, scriptAt), script: rest[scriptAt]!, programArgs: rest.slice(scriptAt + 1) };
}

// What the downward API and an overlay would provide; only needed so the programs' flag parsers can run.
const ENV = {
  POD_NAME: 'podidentity-operator-0',
  POD_NAMESPACE: 'podidentity-system',
  NODE_NAME: 'aks-pool-vmss000000',
  NODE_IP: '10.224.0.4',
  AZURE_SUBSCRIPTION_ID: '00000000-0000-4000-8000-000000000001',
  POD_IDENTITY_RESOURCE_GROUP: 'podid',
  POD_IDENTITY_LOCATION: 'westeurope',
  POD_IDENTITY_OIDC_ISSUER: 'https://issuer.example',
};

describe('effective container commands', () => {
  test('Kubernetes composition: command replaces ENTRYPOINT and drops CMD; args replaces CMD', () => {
    const image = { entrypoint: ['ep'], cmd: ['c1', 'c2'] };
    assert.deepEqual(composeCommand({}, image), ['ep', 'c1', 'c2']);
    assert.deepEqual(composeCommand({ args: ['a'] }, image), ['ep', 'a']);
    assert.deepEqual(composeCommand({ command: ['x'] }, image), ['x']);
    assert.deepEqual(composeCommand({ command: ['x'], args: ['a'] }, image), ['x', 'a']);
    assert.deepEqual(composeCommand({ args: ['--n=$(N)', '$$(N)', '$(MISSING)'] }, image, { N: '1' }), ['ep', '--n=1', '$(N)', '$(MISSING)']);
    assert.throws(() => composeCommand({ command: [] }, { entrypoint: [], cmd: [] }), /no command/);
  });

  test('$(VAR) expansion leaves undefined references and unescapes $$', () => {
    const env: Record<string, string> = { A: 'x' };
    assert.equal(expandReferences('$(A)-$(B)-$$(A)-$$', (n) => env[n]), 'x-$(B)-$(A)-$');
  });

  test('the node images: docker-entrypoint.sh prepends node to a first argument that is a flag or no command', () => {
    const path = '/usr/bin:/bin';
    assert.deepEqual(resolveEntrypointScript(['docker-entrypoint.sh', '--version'], path), ['node', '--version']);
    assert.deepEqual(resolveEntrypointScript(['docker-entrypoint.sh', 'main.js'], path), ['node', 'main.js']);
    assert.deepEqual(resolveEntrypointScript(['docker-entrypoint.sh', 'node', 'x.js'], path), ['node', 'x.js']);
    assert.deepEqual(resolveEntrypointScript(['docker-entrypoint.sh', 'sleep', '1'], path), ['sleep', '1']);
  });

  test('Docker: an ENTRYPOINT in the Dockerfile clears the base image CMD', () => {
    const onlyEntrypoint = imageConfig('FROM node:24-bookworm-slim\nENTRYPOINT ["node", "x.js"]\n');
    assert.deepEqual(onlyEntrypoint.cmd, []);
    const inherited = imageConfig('FROM node:24-bookworm-slim\nWORKDIR /app\n');
    assert.deepEqual([inherited.entrypoint, inherited.cmd, inherited.workdir], [['docker-entrypoint.sh'], ['node'], '/app']);
  });

  for (const overlay of ['config/default', 'config/overlays/dev', 'config/overlays/aks', 'config/overlays/uninstall']) {
    test(`${overlay}: every container runs node with node's options, a script the image contains, and flags the program accepts`, async () => {
      const { objects } = await kustomize(overlay);
      const containers = workloadContainers(objects);
      assert.ok(containers.length >= 2, 'the operator and the agent');
      for (const { workload, container } of containers) {
        const where = `${workload.kind}/${workload.metadata.name} container ${container.name}`;
        const dockerfile = dockerfileFor(container.image);
        const image = readImageConfig(repoRoot, dockerfile);
        const argv = resolveEntrypointScript(composeCommand(container, image, ENV), image.env['PATH'] ?? '');
        if (argv[0] === 'sleep') continue; // the uninstall component's idle container
        const { nodeOptions, script, programArgs } = splitNodeCommand(argv);
        assert.ok(script, `${where}: \`${argv.join(' ')}\` has no script: node would take every argument as its own option`);
        // node itself must accept its options (it exits 9, "bad option", otherwise).
        const check = await run(process.execPath, [...nodeOptions, '-e', '0']).then(
          () => 'ok',
          (err: { stderr?: string }) => err.stderr ?? String(err),
        );
        assert.equal(check, 'ok', `${where}: node rejects ${nodeOptions.join(' ')}`);
        // The script is a file the image's COPY instructions put there, compiled from a source that exists.
        const inImage = script.startsWith('/') ? script : join(image.workdir, script);
        const copied = image.copies.find((c) => inImage.startsWith(`${c.dest}/`));
        assert.ok(copied?.src.startsWith('/src/dist/'), `${where}: ${inImage} is copied from the build's dist/ (${dockerfile})`);
        if (!copied) continue;
        const built = `${copied.src}${inImage.slice(copied.dest.length)}`; // /src/dist/operator/main.js
        const source = built.replace(/^\/src\/dist\//, '').replace(/\.js$/, '.ts');
        assert.ok(existsSync(join(repoRoot, source)), `${where}: ${built} is compiled from ${source}, which exists`);
        if (dockerfile === 'Dockerfile.operator') {
          assert.doesNotThrow(() => loadOperatorConfig(programArgs.filter((a) => !/^--(subscription-id|resource-group|location|aks-cluster-id)=</.test(a)), ENV), where);
        } else {
          const [subcommand, ...flags] = programArgs;
          assert.ok(subcommand === 'run' || subcommand === 'uninstall', `${where}: agent subcommand ${subcommand}`);
          if (subcommand === 'run') assert.doesNotThrow(() => loadAgentConfig(flags, ENV), where);
          else assert.doesNotThrow(() => parseAgentFlags(flags), where);
        }
      }
    });
  }
});

describe('the kubelet model', () => {
  test("restart back-off is kubelet's: 10 s doubling, capped at 5 min", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 20].map((n) => restartDelay(KUBELET_BACKOFF, n) / 1000), [10, 20, 40, 80, 160, 300, 300, 300]);
    assert.equal(KUBELET_BACKOFF.resetAfterMs, 10 * 60_000);
  });

  test('the downward API fields the manifests use resolve from the Pod; others are refused by name', async () => {
    const pod = { metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'a' } }, spec: { nodeName: 'n1', containers: [] }, status: { hostIP: '10.0.0.4', podIP: '10.1.0.9' } };
    assert.deepEqual(['metadata.name', 'metadata.namespace', 'spec.nodeName', 'status.hostIP', 'status.podIP', "metadata.labels['app']"].map((f) => fieldValue(pod, f)), ['p', 'ns', 'n1', '10.0.0.4', '10.1.0.9', 'a']);
    assert.throws(() => fieldValue(pod, 'status.phase'), /fieldRef status\.phase is not supported/);
    const used = new Set(
      workloadContainers((await kustomize('config/default')).objects).flatMap(({ container }) => (container.env ?? []).flatMap((e) => (e.valueFrom?.fieldRef ? [e.valueFrom.fieldRef.fieldPath] : []))),
    );
    for (const field of used) assert.doesNotThrow(() => fieldValue(pod, field), field);
  });
});
