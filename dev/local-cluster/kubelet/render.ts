import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The loose shape of a rendered Kubernetes object; tests narrow what they read. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [field: string]: any;
}

/** Parses multi-document YAML, failing on any document the parser reports an error for. */
export function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`document ${i + 1}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj = doc.toJS() as K8sObject | null;
    return obj ? [obj] : [];
  });
}

/** `kubectl kustomize <dir>` (kubectl's built-in kustomize), relative to the repository root. */
export async function kustomize(dir: string): Promise<{ yaml: string; objects: K8sObject[] }> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 32 << 20 });
  return { yaml: stdout, objects: parseObjects(stdout) };
}

export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

export function gvk(o: Pick<K8sObject, 'apiVersion' | 'kind'>): string {
  return `${o.apiVersion}/${o.kind}`;
}
