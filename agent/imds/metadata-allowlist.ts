/**
 * The metadata proxy's allow-list: the only node IMDS paths a pod may read through the agent. Each entry
 * is a statement about the node that is not a credential and cannot be turned into one; agent/README.md
 * gives the reason for each. Everything else is refused, above all `/metadata/identity` (the node's tokens)
 * and `/metadata/attested` (a document Azure signs to vouch for the node). Paths are canonical and
 * lowercase (`CanonicalTarget.key`).
 */

interface AllowedPath {
  path: string;
  /** Whether paths below `path` (leaves of the document) are allowed too. */
  subtree: boolean;
}

export const METADATA_ALLOW_LIST: readonly AllowedPath[] = [
  { path: '/metadata/instance', subtree: true },
  { path: '/metadata/loadbalancer', subtree: false },
  { path: '/metadata/scheduledevents', subtree: false },
  { path: '/metadata/versions', subtree: false },
];

/** Leaves of an allowed subtree that are still refused: data the VM's creator supplied, which can hold secrets. */
const REFUSED_LEAVES = ['/metadata/instance/compute/userdata', '/metadata/instance/compute/customdata'];

/** Fields removed from the documents that contain them (`/metadata/instance`, `/metadata/instance/compute`). */
const REDACTED_COMPUTE_FIELDS = ['userData', 'customData'];

const within = (key: string, path: string) => key === path || key.startsWith(`${path}/`);

/**
 * Every IMDS path segment is a plain name or an array index (`compute`, `vmId`, `interface`, `0`). Anything
 * else (`userData.`, `compute.`, `user-Data`, `~`) is a spelling some server may trim or fold into a name
 * the list refuses (a trailing dot is dropped by Windows path handling), or into a document the agent would
 * not recognise and so not redact. Only one reading may exist, so only plain names are forwarded.
 */
const PLAIN_SEGMENTS = /^(\/[a-z0-9]+)+$/;

export function proxyAllowed(key: string): boolean {
  if (!PLAIN_SEGMENTS.test(key)) return false;
  if (REFUSED_LEAVES.some((leaf) => within(key, leaf))) return false;
  return METADATA_ALLOW_LIST.some((entry) => (entry.subtree ? within(key, entry.path) : key === entry.path));
}

/**
 * The node IMDS answer for an allowed path, with the refused leaves taken out of the documents that hold
 * them. Undefined when such a document is not the JSON it should be: the caller then refuses (fail closed).
 */
export function redactAnswer(key: string, status: number, text: string): string | undefined {
  if (status !== 200 || (key !== '/metadata/instance' && key !== '/metadata/instance/compute')) return text;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (doc === null || typeof doc !== 'object') return undefined;
  const compute = key === '/metadata/instance' ? (doc as Record<string, unknown>)['compute'] : doc;
  if (compute !== null && typeof compute === 'object') {
    for (const field of REDACTED_COMPUTE_FIELDS) delete (compute as Record<string, unknown>)[field];
  }
  return JSON.stringify(doc);
}
