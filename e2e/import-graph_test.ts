import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layout of the code that is not shipped, checked from its imports. A folder is a first-level folder
 * of e2e/ (e2e/agent, e2e/testing, ...) or of dev/ (dev/azure-emulator, dev/local-cluster, ...); everything
 * below it belongs to it. Two folders that import each other cannot be understood, moved or reused one
 * without the other, so the graph between folders must have no cycle, and it must point one way:
 * e2e/ → dev/local-cluster → dev/azure-emulator → dev/support, with dev/bench beside e2e/.
 */
const REPO = fileURLToPath(new URL('../', import.meta.url));
const ROOTS = ['e2e', 'dev'];

/** Lower rank may never import higher rank; within a rank only the folder itself. */
const RANK: Record<string, number> = {
  'dev/support': 0,
  'dev/azure-emulator': 1,
  'dev/local-cluster': 2,
  'dev/bench': 3,
};

function sources(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(join(REPO, dir), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sources(path);
    return /\.(ts|mts|mjs|js)$/.test(e.name) ? [path] : [];
  });
}

/** Relative module specifiers: static imports, re-exports and dynamic import(). */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]*)\1/gm;
  for (const m of text.matchAll(pattern)) found.push(m[2]!);
  return found;
}

/** The folder a repository-relative path belongs to, or undefined outside e2e/ and dev/. */
export function folderOf(path: string): string | undefined {
  const parts = path.split(sep);
  if (!ROOTS.includes(parts[0]!)) return undefined;
  // A file directly in e2e/ or dev/ (like this test) is its own folder's concern, not a folder's.
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : undefined;
}

export function folderGraph(files: string[], read: (file: string) => string): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of files) {
    const from = folderOf(file);
    if (!from) continue;
    for (const spec of specifiers(read(file))) {
      const target = relative(REPO, resolve(REPO, dirname(file), spec));
      const to = folderOf(target) ?? target.split(sep)[0]!;
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${file} imports ${spec}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/** Every cycle, each as the folders on it and the import that makes each step. */
export function cycles(graph: Map<string, Map<string, string>>): string[] {
  const found: string[] = [];
  const seen = new Set<string>();
  const walk = (node: string, path: string[]): void => {
    for (const next of graph.get(node)?.keys() ?? []) {
      const at = path.indexOf(next);
      if (at >= 0) {
        const loop = [...path.slice(at), next];
        const key = [...loop.slice(0, -1)].sort().join(' ');
        if (!seen.has(key)) {
          seen.add(key);
          const steps = loop.slice(0, -1).map((f, i) => graph.get(f)!.get(loop[i + 1]!)!);
          found.push(`${loop.join(' → ')}\n    ${steps.join('\n    ')}`);
        }
        continue;
      }
      walk(next, [...path, next]);
    }
  };
  for (const node of graph.keys()) walk(node, [node]);
  return found;
}

describe('import graph of e2e/ and dev/', () => {
  const files = ROOTS.flatMap((root) => sources(root));
  const graph = folderGraph(files, (file) => readFileSync(join(REPO, file), 'utf8'));

  it('has no cycle between folders', () => {
    assert.ok(files.length > 0, 'no sources found under e2e/ or dev/');
    assert.deepEqual(cycles(graph), []);
  });

  it('nothing in dev/ imports e2e/', () => {
    const wrong = [...graph].flatMap(([from, edges]) =>
      from.startsWith('dev/') ? [...edges].filter(([to]) => to.startsWith('e2e/') || to === 'e2e').map(([, why]) => why) : [],
    );
    assert.deepEqual(wrong, []);
  });

  it('dev/ folders import only folders below them: local-cluster → azure-emulator → support', () => {
    const wrong = [...graph].flatMap(([from, edges]) =>
      from in RANK ? [...edges].filter(([to]) => to in RANK && RANK[to]! >= RANK[from]!).map(([, why]) => why) : [],
    );
    assert.deepEqual(wrong, []);
  });

  it('detects a cycle through a nested file', () => {
    const fake: Record<string, string> = {
      [join('e2e', 'a', 'x.ts')]: `import { y } from '../b/deep/y.js';`,
      [join('e2e', 'b', 'deep', 'y.ts')]: `export const y = await import('../../a/x.js');`,
    };
    const found = cycles(folderGraph(Object.keys(fake), (f) => fake[f]!));
    assert.equal(found.length, 1);
    assert.match(found[0]!, /^e2e\/(a|b) → e2e\/(a|b) → e2e\/(a|b)\n/);
  });
});
