import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ApiextensionsV1Api, loadAllYaml, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { waitFor } from '../../support/wait.js';

export const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url));

/** The CRD files, as crds/kustomization.yaml lists them: the one list every consumer of crds/ reads. */
export function crdFiles(): string[] {
  const kustomization = parse(readFileSync(join(crdDir, 'kustomization.yaml'), 'utf8')) as { resources?: unknown };
  const files = kustomization.resources;
  if (!Array.isArray(files) || !files.every((f): f is string => typeof f === 'string')) throw new Error('crds/kustomization.yaml: resources must be a list of file names');
  return files;
}

export function loadCrds(): V1CustomResourceDefinition[] {
  return crdFiles()
    // loadAllYaml deserialises into client-node's model classes. Their names differ from the wire for a few
    // schema keywords (`enum` is `_enum`, `default` is `_default`), so a plain YAML parse would have those
    // keywords silently dropped by the typed client.
    .flatMap((f) => loadAllYaml(readFileSync(join(crdDir, f), 'utf8')) as V1CustomResourceDefinition[]);
}

/** Creates (or replaces) the project's CRDs and waits until the API server serves them. */
export async function installCrds(kc: KubeConfig): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const crd of loadCrds()) {
    const name = crd.metadata?.name ?? '';
    try {
      const existing = await api.readCustomResourceDefinition({ name });
      crd.metadata = { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion };
      await api.replaceCustomResourceDefinition({ name, body: crd });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await api.createCustomResourceDefinition({ body: crd });
    }
    await waitFor(`CRD ${name} established`, async () => {
      const got = await api.readCustomResourceDefinition({ name });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  }
}
