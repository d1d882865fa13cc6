/** What the shared discovery cache keeps, and for which URL it answers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscoveryDocuments } from './discovery-documents.js';

const AUTHORITY = 'https://login.example';
const TENANT = '00000000-0000-0000-0000-00000000aaaa';
const url = (tenant: string) => `${AUTHORITY}/${tenant}/v2.0/.well-known/openid-configuration`;

function document(base: string): Record<string, string> {
  return { issuer: `${base}/v2.0`, token_endpoint: `${base}/oauth2/v2.0/token`, authorization_endpoint: `${base}/oauth2/v2.0/authorize`, jwks_uri: `${base}/discovery/v2.0/keys` };
}

function offer(cache: DiscoveryDocuments, at: string, body: unknown = document(`${AUTHORITY}/${TENANT}`)): void {
  cache.offer(at, {}, JSON.stringify(body), body);
}

test('discovery cache: a document of the authority is kept for its URL', () => {
  const cache = new DiscoveryDocuments(AUTHORITY);
  offer(cache, url(TENANT));
  assert.deepEqual(JSON.parse(cache.get(url(TENANT))!.text), document(`${AUTHORITY}/${TENANT}`));
});

test('discovery cache: a GET that is not discovery (instance discovery, keys) is never kept, whatever it answered', () => {
  const cache = new DiscoveryDocuments(AUTHORITY);
  for (const other of [`${AUTHORITY}/common/discovery/instance?api-version=1.1&authorization_endpoint=x`, `${AUTHORITY}/${TENANT}/discovery/v2.0/keys`]) {
    offer(cache, other);
    assert.equal(cache.get(other), undefined, other);
  }
});

test('discovery cache key collisions: a document answers only its exact URL (no tenant case folding, trailing slash, query or encoded slash)', () => {
  const cache = new DiscoveryDocuments(AUTHORITY);
  offer(cache, url(TENANT));
  for (const near of [url(TENANT.toUpperCase()), `${url(TENANT)}/`, `${url(TENANT)}?x=1`, url(`x%2F..%2F${TENANT}`), url(`x/../${TENANT}`), url('00000000-0000-0000-0000-00000000cccc')]) {
    assert.equal(cache.get(near), undefined, near);
  }
});

test('discovery cache: a document without an issuer, with an endpoint that is not a URL, or not an object is not kept', () => {
  const cache = new DiscoveryDocuments(AUTHORITY);
  const { issuer: _issuer, ...noIssuer } = document(`${AUTHORITY}/${TENANT}`);
  for (const body of [noIssuer, { ...document(`${AUTHORITY}/${TENANT}`), jwks_uri: 'not a url' }, [document(`${AUTHORITY}/${TENANT}`)], null, 'document']) {
    offer(cache, url(TENANT), body);
    assert.equal(cache.get(url(TENANT)), undefined, JSON.stringify(body));
  }
});

test('discovery cache memory: at most 64 documents, the oldest dropped first', () => {
  const cache = new DiscoveryDocuments(AUTHORITY);
  const tenants = Array.from({ length: 65 }, (_, i) => `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`);
  for (const tenant of tenants) offer(cache, url(tenant), document(`${AUTHORITY}/${tenant}`));
  assert.equal(cache.get(url(tenants[0]!)), undefined, 'the first kept was dropped');
  for (const tenant of tenants.slice(1)) assert.ok(cache.get(url(tenant)), tenant);
});

test('discovery cache TTL: a document is served for an hour after it was fetched, then asked again', () => {
  let now = 1_000;
  const cache = new DiscoveryDocuments(AUTHORITY, () => now);
  offer(cache, url(TENANT));
  now += 60 * 60_000 - 1;
  assert.ok(cache.get(url(TENANT)), 'served just before the hour');
  now += 1;
  assert.equal(cache.get(url(TENANT)), undefined, 'not served at the hour');
  offer(cache, url(TENANT));
  assert.ok(cache.get(url(TENANT)), 'a new fetch is kept again');
});
