/**
 * The agent runs on every node, so what its module graph loads is its memory floor. Loading
 * @kubernetes/client-node costs about 84 MB of RSS (agent/README.md, "Memory"); in a pod the agent needs none
 * of it. These tests read the graph statically from agent/main.ts, as Node would load it: `import type` is
 * erased, every other import (even `import { type X }`, kept under verbatimModuleSyntax) loads its module.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLIENT_NODE = '@kubernetes/client-node';
/** The one module allowed to load client-node, lazily, when a kubeconfig file is given. */
const KUBECONFIG_LOADER = 'lib/k8s/kubeconfig.ts';

interface ModuleImports {
  /** Loaded when this module loads. */
  static: string[];
  /** `import()` calls: loaded only when that code runs. */
  dynamic: string[];
}

function importsOf(file: string): ModuleImports {
  const source = ts.createSourceFile(file, readFileSync(join(REPO, file), 'utf8'), ts.ScriptTarget.Latest, true);
  const found: ModuleImports = { static: [], dynamic: [] };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.importClause?.isTypeOnly) found.static.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.isTypeOnly) found.static.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      found.dynamic.push(arg && ts.isStringLiteral(arg) ? arg.text : '<computed>');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every module statically loaded from `entry`, with the chain that first reached it. */
function staticGraph(entry: string): Map<string, string[]> {
  const reached = new Map<string, string[]>([[entry, [entry]]]);
  const queue = [entry];
  while (queue.length) {
    const file = queue.shift()!;
    for (const specifier of importsOf(file).static) {
      const target = specifier.startsWith('.') ? relative(REPO, resolve(REPO, dirname(file), specifier)).replace(/\.js$/, '.ts') : specifier;
      if (reached.has(target)) continue;
      reached.set(target, [...reached.get(file)!, target]);
      if (specifier.startsWith('.')) queue.push(target);
    }
  }
  return reached;
}

test('the agent in a pod loads no client-node: no static import of @kubernetes/client-node is reachable from agent/main.ts', () => {
  const graph = staticGraph('agent/main.ts');
  const chain = graph.get(CLIENT_NODE);
  assert.equal(chain, undefined, `client-node is loaded at start-up through ${chain?.join(' → ')}`);
  // The check is only as good as the graph: it must see the agent's own code and its other libraries.
  for (const expected of ['agent/agent.ts', 'lib/k8s/informer.ts', 'lib/k8s/in-cluster.ts', 'lib/node-http.ts', 'prom-client', 'winston']) {
    assert.ok(graph.has(expected), `${expected} missing from the agent's import graph`);
  }
});

test('only the kubeconfig loader imports client-node, lazily, and the agent reaches it', () => {
  const graph = staticGraph('agent/main.ts');
  const lazy = [...graph.keys()].filter((file) => file.endsWith('.ts') && importsOf(file).dynamic.includes(CLIENT_NODE));
  assert.deepEqual(lazy, [KUBECONFIG_LOADER]);
  assert.deepEqual(
    [...graph.keys()].filter((file) => file.endsWith('.ts') && importsOf(file).dynamic.includes('<computed>')),
    [],
    'an import() of a computed specifier could load anything',
  );
});

/** Globals backed by undici, whose WebAssembly HTTP parser costs the agent about 16 MB of RSS once used. */
const UNDICI_GLOBALS = new Set(['fetch', 'Request', 'Response', 'Headers', 'FormData', 'WebSocket', 'EventSource']);

function undiciCalls(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(join(REPO, file), 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && ts.isIdentifier(node.expression) && UNDICI_GLOBALS.has(node.expression.text)) {
      found.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} ${node.expression.text}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

test('the agent never calls fetch or builds its Request/Response/Headers: its HTTP goes through node:http (agent/issuance/http-client.ts)', () => {
  const own = [...staticGraph('agent/main.ts').keys()].filter((file) => file.endsWith('.ts'));
  assert.ok(own.includes('agent/issuance/http-client.ts') && own.includes('agent/issuance/aad-exchange.ts') && own.includes('agent/issuance/upstream.ts'));
  assert.deepEqual(own.flatMap(undiciCalls), []);
});

/**
 * Loaded from an ES module, these cost the agent memory for nothing: `node:http`'s import facade loads undici
 * (lib/node-http.ts), and msal-node's ES build is msal-common's ~50 modules where its CommonJS build is one file.
 * The agent `require`s them.
 */
const REQUIRED_NOT_IMPORTED = ['node:http', 'http', '@azure/msal-node'];

test('the agent imports neither node:http nor msal-node from ES modules: it requires them (their ES forms cost ~10 MB RSS)', () => {
  const graph = staticGraph('agent/main.ts');
  for (const specifier of REQUIRED_NOT_IMPORTED) assert.equal(graph.get(specifier), undefined, `${specifier} is imported through ${graph.get(specifier)?.join(' → ')}`);
  const own = [...graph.keys()].filter((file) => file.endsWith('.ts'));
  assert.deepEqual(own.filter((file) => importsOf(file).dynamic.some((d) => REQUIRED_NOT_IMPORTED.includes(d))), []);
});

test('loading the agent loads no undici, and msal-node as its one CommonJS file (checked in a fresh process)', () => {
  const probe = `
    const before = process.moduleLoadList.some((m) => m.includes('undici'));
    await import('./agent/agent.ts');
    const { createRequire } = await import('node:module');
    const required = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify({
      before,
      undici: process.moduleLoadList.filter((m) => m.includes('undici')),
      msalCommonJs: required.some((f) => f.endsWith('/@azure/msal-node/lib/msal-node.cjs')),
    }));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  const loaded = JSON.parse(out) as { before: boolean; undici: string[]; msalCommonJs: boolean };
  assert.equal(loaded.before, false, 'the probe itself loaded undici');
  assert.deepEqual(loaded.undici, []);
  assert.equal(loaded.msalCommonJs, true);
});
