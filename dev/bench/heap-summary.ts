/**
 * Dev-only: groups a V8 heap snapshot (as `--heapsnapshot-signal` writes it) for a memory investigation.
 *
 *   node --import tsx dev/bench/heap-summary.ts FILE.heapsnapshot [top] [constructor…]
 *
 * Prints self size by node type and constructor, then the objects that retain the most (retained size from
 * the dominator tree, weak edges ignored), each with the edge that names it from its dominator, and the
 * retained size of every instance of each constructor named after `top`.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] }; node_count: number };
  nodes: number[];
  edges: number[];
  strings: string[];
}

const [file, topArg, ...named] = process.argv.slice(2);
if (!file) throw new Error('usage: heap-summary.ts FILE.heapsnapshot [top] [constructor…]');
const top = Number(topArg ?? 40);
const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
const { meta } = snap.snapshot;
const NF = meta.node_fields.length;
const EF = meta.edge_fields.length;
const nType = meta.node_fields.indexOf('type');
const nName = meta.node_fields.indexOf('name');
const nSelf = meta.node_fields.indexOf('self_size');
const nEdges = meta.node_fields.indexOf('edge_count');
const eType = meta.edge_fields.indexOf('type');
const eName = meta.edge_fields.indexOf('name_or_index');
const eTo = meta.edge_fields.indexOf('to_node');
const nodeTypes = meta.node_types[0];
const edgeTypes = meta.edge_types[0];
const n = snap.nodes.length / NF;
const firstEdge = new Uint32Array(n + 1);
for (let i = 0, e = 0; i < n; i++) {
  firstEdge[i] = e;
  e += snap.nodes[i * NF + nEdges]! * EF;
  firstEdge[i + 1] = e;
}
const typeOf = (i: number) => nodeTypes[snap.nodes[i * NF + nType]!]!;
const nameOf = (i: number) => snap.strings[snap.nodes[i * NF + nName]!]!;
const selfOf = (i: number) => snap.nodes[i * NF + nSelf]!;
const label = (i: number) => {
  const t = typeOf(i);
  const name = nameOf(i);
  if (t === 'object' || t === 'closure' || t === 'native') return `${t} ${name.slice(0, 60)}`;
  return t === 'string' || t === 'concatenated string' || t === 'sliced string' ? t : `${t} ${name.slice(0, 40)}`;
};
const edgeLabel = (e: number) => {
  const t = edgeTypes[snap.edges[e + eType]!]!;
  const v = snap.edges[e + eName]!;
  return t === 'element' || t === 'hidden' ? `[${v}]` : String(snap.strings[v]);
};

const mb = (b: number) => (b / 2 ** 20).toFixed(2);
let total = 0;
const byLabel = new Map<string, { count: number; bytes: number }>();
for (let i = 0; i < n; i++) {
  const s = selfOf(i);
  total += s;
  const k = label(i);
  const g = byLabel.get(k) ?? { count: 0, bytes: 0 };
  g.count++;
  g.bytes += s;
  byLabel.set(k, g);
}
console.log(`total self size ${mb(total)} MB in ${n} nodes\n\n== self size by type and constructor ==`);
for (const [k, g] of [...byLabel].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) console.log(`${mb(g.bytes).padStart(8)} MB ${String(g.count).padStart(8)}  ${k}`);

// Dominators (Cooper, Harvey, Kennedy), from the synthetic root, weak edges left out.
const weak = edgeTypes.indexOf('weak');
const order = new Int32Array(n).fill(-1); // postorder number
const post: number[] = [];
{
  const stack: number[] = [0];
  const cursor = new Uint32Array(n);
  const seen = new Uint8Array(n);
  seen[0] = 1;
  for (let i = 0; i < n; i++) cursor[i] = firstEdge[i]!;
  while (stack.length) {
    const v = stack[stack.length - 1]!;
    if (cursor[v]! < firstEdge[v + 1]!) {
      const e = cursor[v]!;
      cursor[v] = e + EF;
      if (snap.edges[e + eType] === weak) continue;
      const w = snap.edges[e + eTo]! / NF;
      if (!seen[w]) {
        seen[w] = 1;
        stack.push(w);
      }
    } else {
      order[v] = post.length;
      post.push(v);
      stack.pop();
    }
  }
}
const preds: number[][] = Array.from({ length: n }, () => []);
for (let v = 0; v < n; v++) {
  if (order[v] === -1) continue;
  for (let e = firstEdge[v]!; e < firstEdge[v + 1]!; e += EF) {
    if (snap.edges[e + eType] === weak) continue;
    preds[snap.edges[e + eTo]! / NF]!.push(v);
  }
}
const idom = new Int32Array(n).fill(-1);
idom[0] = 0;
const intersect = (a: number, b: number) => {
  while (a !== b) {
    while (order[a]! < order[b]!) a = idom[a]!;
    while (order[b]! < order[a]!) b = idom[b]!;
  }
  return a;
};
for (let changed = true; changed; ) {
  changed = false;
  for (let k = post.length - 2; k >= 0; k--) {
    const v = post[k]!;
    let d = -1;
    for (const p of preds[v]!) if (idom[p] !== -1) d = d === -1 ? p : intersect(p, d);
    if (d !== -1 && idom[v] !== d) {
      idom[v] = d;
      changed = true;
    }
  }
}
const retained = new Float64Array(n);
for (const v of post) {
  retained[v]! += selfOf(v);
  if (v !== 0 && idom[v]! >= 0) retained[idom[v]!]! += retained[v]!;
}
const nameFromDominator = (v: number) => {
  const d = idom[v]!;
  for (let e = firstEdge[d]!; e < firstEdge[d + 1]!; e += EF) if (snap.edges[e + eTo]! / NF === v) return edgeLabel(e);
  return '?';
};
console.log('\n== retained size (dominator tree): largest objects that are not just a step below a larger one ==');
const candidates = post.filter((v) => v !== 0 && retained[v]! > 256 * 1024).sort((a, b) => retained[b]! - retained[a]!);
for (const v of candidates.slice(0, top * 2)) {
  const path: string[] = [];
  for (let u = v, depth = 0; u !== 0 && depth < 6; u = idom[u]!, depth++) path.push(`${label(u)}(.${nameFromDominator(u)})`);
  console.log(`${mb(retained[v]!).padStart(8)} MB  ${path.join(' <- ')}`);
}
for (const name of named) {
  const found = post.filter((v) => (typeOf(v) === 'object' || typeOf(v) === 'closure') && nameOf(v) === name);
  console.log(`\n== ${name}: ${found.length} instance(s), retained ${mb(found.reduce((a, v) => a + retained[v]!, 0))} MB ==`);
  for (const v of found.sort((a, b) => retained[b]! - retained[a]!).slice(0, 10)) console.log(`${mb(retained[v]!).padStart(8)} MB  .${nameFromDominator(v)} <- ${label(idom[v]!)}`);
}
