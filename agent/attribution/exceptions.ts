import { parse } from 'yaml';

/**
 * IMDS exceptions (migrated aad-pod-identity `AzurePodIdentityException`s): pods that match an entry and
 * that no PodIdentity selects are passed through to the node's real IMDS, and so get the node's identities.
 * Parsing is strict and all-or-nothing: one bad entry means no exceptions at all (fail closed).
 */
export interface ImdsException {
  namespace: string;
  /** Every label must be present on the pod with this exact value. Never empty. */
  podLabels: Record<string, string>;
  /** Where the entry came from (the migration writes it); for the audit line only. */
  migratedFrom?: string;
}

export type ExceptionsParse = { ok: true; entries: ImdsException[] } | { ok: false; problem: string };

/** The key in the ConfigMap that holds the document (operator/migrate writes it). */
export const EXCEPTIONS_KEY = 'exceptions.yaml';

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const ENTRY_KEYS = new Set(['namespace', 'podLabels', 'migratedFrom']);

function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash < 0) return LABEL_NAME.test(key);
  return LABEL_PREFIX.test(key.slice(0, slash)) && LABEL_NAME.test(key.slice(slash + 1));
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Malformed extends Error {}

function parseEntry(raw: unknown, i: number): ImdsException {
  const where = `exceptions[${i}]`;
  if (!isMapping(raw)) throw new Malformed(`${where} is not a mapping`);
  for (const key of Object.keys(raw)) if (!ENTRY_KEYS.has(key)) throw new Malformed(`${where} has unknown field ${JSON.stringify(key)}`);
  const { namespace, podLabels, migratedFrom } = raw;
  if (typeof namespace !== 'string' || !NAMESPACE.test(namespace)) throw new Malformed(`${where}.namespace must be a namespace name, got ${JSON.stringify(namespace)}`);
  // An entry without labels would hand the node's identities to every pod of the namespace.
  if (!isMapping(podLabels) || Object.keys(podLabels).length === 0) throw new Malformed(`${where}.podLabels must be a non-empty mapping of label to value`);
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(podLabels)) {
    if (!isLabelKey(key)) throw new Malformed(`${where}.podLabels: ${JSON.stringify(key)} is not a valid label key`);
    // Label values are strings; `version: 1` is a YAML number and a mistake, not a match for "1".
    if (typeof value !== 'string' || !LABEL_VALUE.test(value)) throw new Malformed(`${where}.podLabels.${key}: ${JSON.stringify(value)} is not a valid label value (quote it)`);
    labels[key] = value;
  }
  if (migratedFrom !== undefined && typeof migratedFrom !== 'string') throw new Malformed(`${where}.migratedFrom must be a string`);
  return { namespace, podLabels: labels, ...(migratedFrom !== undefined ? { migratedFrom } : {}) };
}

/** Parses the `exceptions.yaml` document. Any problem → `{ ok: false }` naming it; the caller uses no exceptions. */
export function parseExceptions(text: string): ExceptionsParse {
  let doc: unknown;
  try {
    // logLevel 'error': errors throw (with 'silent' they would be dropped), warnings are not printed.
    doc = parse(text, { strict: true, uniqueKeys: true, maxAliasCount: 10, logLevel: 'error' });
  } catch (err) {
    return { ok: false, problem: `not valid YAML: ${(err as Error).message.split('\n')[0]}` };
  }
  if (doc === null || doc === undefined) return { ok: true, entries: [] };
  if (!isMapping(doc)) return { ok: false, problem: 'the document must be a mapping with an `exceptions` list' };
  for (const key of Object.keys(doc)) if (key !== 'exceptions') return { ok: false, problem: `unknown top-level field ${JSON.stringify(key)}` };
  const list = doc['exceptions'];
  if (list === null || list === undefined) return { ok: true, entries: [] };
  if (!Array.isArray(list)) return { ok: false, problem: '`exceptions` must be a list' };
  try {
    return { ok: true, entries: list.map((raw, i) => parseEntry(raw, i)) };
  } catch (err) {
    if (err instanceof Malformed) return { ok: false, problem: err.message };
    throw err;
  }
}

/** The first entry for the pod's own namespace whose every label the pod carries with the same value. */
export function matchException(entries: readonly ImdsException[], pod: { namespace: string; labels: Record<string, string> }): ImdsException | undefined {
  return entries.find((e) => e.namespace === pod.namespace && Object.entries(e.podLabels).every(([k, v]) => Object.hasOwn(pod.labels, k) && pod.labels[k] === v));
}

/** Which pods may bypass pod identity and reach the node's IMDS. Implemented on an informer; faked in tests. */
export interface ExceptionDirectory {
  /**
   * The matching entry, or undefined (also while not synced or when the document is malformed). From the
   * cache as it is: while `isFresh()` is false it may be an entry revoked since, never to be acted on.
   */
  match(pod: { namespace: string; labels: Record<string, string> }): ImdsException | undefined;
  hasSynced(): boolean;
  /** False while the ConfigMap's watch is broken or relisting: a revocation meanwhile may be missing. */
  isFresh(): boolean;
}

/** Splits and checks `<namespace>/<name>`; returns undefined when it is not one. */
export function parseConfigMapRef(value: string): { namespace: string; name: string } | undefined {
  const parts = value.split('/');
  if (parts.length !== 2) return undefined;
  const [namespace, name] = parts as [string, string];
  if (!NAMESPACE.test(namespace)) return undefined;
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) return undefined;
  return { namespace, name };
}

/** The ConfigMap's `data`: a missing key is a problem too (someone wrote the wrong key; say so). */
export function exceptionsFromConfigMap(data: Record<string, string> | undefined): ExceptionsParse {
  const text = data?.[EXCEPTIONS_KEY];
  if (text === undefined) return { ok: false, problem: `the ConfigMap has no key ${EXCEPTIONS_KEY}` };
  return parseExceptions(text);
}
