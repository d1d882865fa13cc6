import { PatchStrategy, setHeaderOptions, type CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';

/** The HTTP status of an API error (client-node's ApiException, our RawApiError, or a watch error). */
export function apiStatusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null | undefined;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

export const isNotFound = (err: unknown): boolean => apiStatusCode(err) === 404;
export const isConflict = (err: unknown): boolean => apiStatusCode(err) === 409;

/** Where a custom object lives. `namespace` absent means cluster-scoped. */
export interface CustomObjectRef {
  group: string;
  version: string;
  plural: string;
  namespace?: string;
  name: string;
}

const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** JSON-merge-patches the object's `/status` subresource with `{ status }`. Returns the updated object. */
export async function patchStatus<T = unknown>(api: CustomObjectsApi, ref: CustomObjectRef, status: unknown, resourceVersion?: string): Promise<T> {
  const body: Record<string, unknown> = { status };
  if (resourceVersion) body['metadata'] = { resourceVersion };
  const { group, version, plural, name } = ref;
  const result = ref.namespace
    ? await api.patchNamespacedCustomObjectStatus({ group, version, plural, namespace: ref.namespace, name, body }, mergePatch())
    : await api.patchClusterCustomObjectStatus({ group, version, plural, name, body }, mergePatch());
  return result as T;
}

/**
 * JSON-merge-patches `metadata`. With `resourceVersion` the patch fails with 409 if the object changed
 * since it was read — needed when replacing a list such as `finalizers`.
 */
export async function patchMetadata<T = unknown>(api: CustomObjectsApi, ref: CustomObjectRef, metadata: Record<string, unknown>, resourceVersion?: string): Promise<T> {
  const body = { metadata: resourceVersion ? { ...metadata, resourceVersion } : metadata };
  const { group, version, plural, name } = ref;
  const result = ref.namespace
    ? await api.patchNamespacedCustomObject({ group, version, plural, namespace: ref.namespace, name, body }, mergePatch())
    : await api.patchClusterCustomObject({ group, version, plural, name, body }, mergePatch());
  return result as T;
}

/** Removes `finalizer` if present. An object that is already gone counts as done. */
export async function removeFinalizer(api: CustomObjectsApi, ref: CustomObjectRef, obj: KubernetesObject, finalizer: string): Promise<boolean> {
  const current = obj.metadata?.finalizers ?? [];
  if (!current.includes(finalizer)) return false;
  try {
    await patchMetadata(api, ref, { finalizers: current.filter((f) => f !== finalizer) }, obj.metadata?.resourceVersion);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
