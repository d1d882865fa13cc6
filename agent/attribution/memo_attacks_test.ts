import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { PodIdentity } from '../../lib/api/types.js';
import type { ListFn, WatchFn } from '../../lib/k8s/informer.js';
import { createLogger } from '../../lib/log.js';
import { waitFor } from '../../dev/support/wait.js';
import { IdentitySelector, type Selection } from '../issuance/select.js';
import { FakePods, pod, podIdentity } from '../testing/fakes.js';
import { Attributor } from './attributor.js';
import { KubeIdentityDirectory } from './kube.js';
import type { PodInfo } from './types.js';

/*
 * Attacks on what the agent keeps per namespace snapshot, per pod and per hint (attributor.identitiesFor,
 * IdentitySelector): a namespace user changes its PodIdentities while the agent's watch is down, so the
 * agent learns of the change only from the relist, and then asks again with the very pod and hint objects
 * whose answers were remembered before the change.
 */

type Pid = PodIdentity & KubernetesObject;

const NO_HINT = { kind: 'none' } as const;

/** The API server's PodIdentities (what a list returns), a watch the test can break, and the real directory. */
function cluster() {
  let rv = 1;
  let server: Pid[] = [];
  const put = (items: Pid[]) => {
    server = items.map((p) => ({ ...p, metadata: { ...p.metadata, resourceVersion: String(++rv) } }));
  };
  let breakWatch: (() => void) | undefined;
  const list: ListFn<Pid> = async () => ({ items: structuredClone(server), metadata: { resourceVersion: String(rv) } }) as KubernetesListObject<Pid>;
  const watch: WatchFn = async (_path, _query, _onEvent, onDone) => {
    breakWatch = () => onDone(Object.assign(new Error('connection reset by peer'), { code: 'ECONNRESET' }));
    return { abort: () => undefined };
  };
  const dir = new KubeIdentityDirectory(undefined, createLogger('test', 'error'), { list, watch });
  return {
    dir,
    put,
    /** Ends the current watch with an error: the informer relists (after its backoff) and watches again. */
    breakWatch: () => {
      assert.ok(breakWatch, 'a watch is running');
      const b = breakWatch;
      breakWatch = undefined;
      b();
    },
    watching: () => breakWatch !== undefined,
  };
}

function pid(name: string, change: { clientId?: string; ready?: boolean; selector?: Record<string, string> } = {}): Pid {
  const p = podIdentity(name, 'app', { clientId: change.clientId ?? `${name}-client`, ready: change.ready ?? true }) as Pid;
  if (change.selector) p.spec = { ...p.spec, selector: { matchLabels: change.selector } };
  return p;
}

describe('attack: a PodIdentity changed while the agent was not watching, then asked for with the remembered pod and hint', () => {
  let c: ReturnType<typeof cluster>;
  let stop: AbortController;
  let attributor: Attributor;
  let selector: IdentitySelector;
  const caller: PodInfo = pod('a', '10.0.0.5');

  beforeEach(async () => {
    c = cluster();
    c.put([pid('reader')]);
    stop = new AbortController();
    c.dir.informer.start(stop.signal);
    await c.dir.informer.waitForSync();
    await waitFor('the first watch', () => c.watching(), { timeoutMs: 5000, intervalMs: 5 });
    attributor = new Attributor('node-1', new FakePods(), c.dir);
    selector = new IdentitySelector('Federated');
  });
  afterEach(() => stop.abort());

  const select = (): Selection => selector.select(attributor.identitiesFor(caller), NO_HINT);

  /** The change happens on the server while the watch is down; resolves once the relist has been cached. */
  async function changeDuringOutage(items: Pid[]): Promise<void> {
    const before = select();
    assert.equal(before.kind, 'selected', 'the decision is remembered before the change');
    assert.equal(select(), before, 'and answered from the memo while nothing changes');
    const lists = c.dir.informer.stats.lists;
    c.breakWatch();
    c.put(items);
    await waitFor('the relist', () => c.dir.informer.stats.lists > lists && c.watching(), { timeoutMs: 10_000, intervalMs: 10 });
  }

  test('made not Ready during the outage: not selected after the relist', async () => {
    await changeDuringOutage([pid('reader', { ready: false })]);
    assert.equal(select().kind, 'not_ready');
  });

  test('given another client id during the outage: the new client id after the relist, never the remembered one', async () => {
    await changeDuringOutage([pid('reader', { clientId: 'other-client' })]);
    const after = select();
    assert.equal(after.kind === 'selected' && after.identity.clientId, 'other-client');
  });

  test('deleted during the outage: nothing selects the pod after the relist', async () => {
    await changeDuringOutage([]);
    assert.deepEqual(select(), { kind: 'none', candidates: [] });
  });

  test('deleted and recreated under the same name for another pod during the outage: the pod is no longer selected', async () => {
    await changeDuringOutage([{ ...pid('reader', { selector: { app: 'someone-else' } }), metadata: { ...pid('reader').metadata, uid: 'pid-reader-2' } }]);
    assert.deepEqual(select(), { kind: 'none', candidates: [] });
  });

  test('a second PodIdentity added during the outage: the pod must name one (IMDS "multiple"), not get the remembered one', async () => {
    await changeDuringOutage([pid('reader'), pid('writer', { selector: { 'podidentity.dev/identity': 'reader' } })]);
    assert.equal(select().kind, 'multiple');
  });
});
