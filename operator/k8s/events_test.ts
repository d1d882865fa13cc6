import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { EventRecorder, rawEventsApi } from './events.js';

interface Seen {
  method: string;
  path: string;
  contentType: string;
  authorization: string;
  body: unknown;
}

/** A local HTTP server in place of the API server: records each request and answers `status`. */
async function withApiServer(status: number, run: (server: string, seen: Seen[]) => Promise<void>): Promise<void> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', contentType: req.headers['content-type'] ?? '', authorization: req.headers.authorization ?? '', body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(status < 300 ? { kind: 'Event' } : { kind: 'Status', message: 'no' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

const pid = { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentity', metadata: { name: 'web', namespace: 'team-a', uid: 'u-1', resourceVersion: '7' } };
const at = (iso: string) => () => new Date(iso);

describe('EventRecorder over raw requests', () => {
  it('POSTs a new Event as JSON with the credentials, then PATCHes only count and lastTimestamp for a repeat', async () => {
    await withApiServer(201, async (server, seen) => {
      const api = rawEventsApi({ server, credentials: async () => ({ agent: undefined, headers: { Authorization: 'Bearer t' } }) });
      let now = '2026-12-01T00:00:00.000Z';
      const recorder = new EventRecorder(api, 'podidentity-operator', { now: () => new Date(now) });
      await recorder.record(pid, 'Normal', 'Ready', 'in place');
      now = '2026-12-01T00:00:05.000Z';
      await recorder.record(pid, 'Normal', 'Ready', 'in place');
      assert.equal(seen.length, 2);
      const [created, bumped] = seen as [Seen, Seen];
      assert.equal(created.method, 'POST');
      assert.equal(created.path, '/api/v1/namespaces/team-a/events');
      assert.equal(created.contentType, 'application/json');
      assert.equal(created.authorization, 'Bearer t');
      const body = created.body as { metadata: { name: string; namespace: string }; involvedObject: unknown; reason: string; type: string; count: number; firstTimestamp: string; lastTimestamp: string; source: unknown };
      assert.match(body.metadata.name, /^web\.[0-9a-f]{16}$/);
      assert.equal(body.metadata.namespace, 'team-a');
      assert.deepEqual(body.involvedObject, { apiVersion: 'podidentity.dev/v1alpha1', kind: 'PodIdentity', name: 'web', namespace: 'team-a', uid: 'u-1', resourceVersion: '7' });
      assert.deepEqual([body.reason, body.type, body.count, body.firstTimestamp, body.lastTimestamp], ['Ready', 'Normal', 1, '2026-12-01T00:00:00.000Z', '2026-12-01T00:00:00.000Z']);
      assert.deepEqual(body.source, { component: 'podidentity-operator' });
      assert.equal(bumped.method, 'PATCH');
      assert.equal(bumped.path, `/api/v1/namespaces/team-a/events/${body.metadata.name}`);
      assert.equal(bumped.contentType, 'application/json-patch+json');
      assert.deepEqual(bumped.body, [{ op: 'replace', path: '/count', value: 2 }, { op: 'replace', path: '/lastTimestamp', value: '2026-12-01T00:00:05.000Z' }]);
    });
  });

  it('never throws when the API server refuses, logs it, and posts a new Event next time instead of bumping one that may not exist', async () => {
    await withApiServer(403, async (server, seen) => {
      const warnings: string[] = [];
      const logger = { warn: (msg: string) => void warnings.push(msg) } as unknown as NonNullable<ConstructorParameters<typeof EventRecorder>[2]>['logger'];
      const recorder = new EventRecorder(rawEventsApi({ server, credentials: async () => ({ agent: undefined, headers: {} }) }), 'c', { logger, now: at('2026-12-01T00:00:00.000Z') });
      await recorder.record(pid, 'Warning', 'Denied', 'no');
      await recorder.record(pid, 'Warning', 'Denied', 'no');
      assert.deepEqual(seen.map((s) => s.method), ['POST', 'POST']);
      assert.deepEqual(warnings, ['could not record event', 'could not record event']);
    });
  });
});
