import type { ApiServer } from '../../lib/k8s/api-server.js';
import { requestJson } from '../../lib/k8s/rest.js';

/**
 * A JSON merge patch of one object (or its `/status`) as a raw request over the keep-alive pool, answered as
 * plain JSON. The reconciler writes a finalizer and a status per new PodIdentity; through client-node's typed
 * API each of those costs its request pipeline, serializer and a fetch stream, several times the request itself
 * (a CPU profile of converging 1,000 PodIdentities). Errors carry the HTTP status as `code`, like client-node's.
 */
export function mergePatch<T>(api: ApiServer, path: string, body: unknown): Promise<T> {
  return requestJson<T>(api, 'PATCH', path, { body: { contentType: 'application/merge-patch+json', value: body } });
}
