import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkCommon, ImdsError, MULTIPLE_IDENTITIES, normalisePath, parseTokenRequest, route, tokenBody } from './protocol.js';

const q = (s: string) => new URLSearchParams(s);

function rejects(fn: () => unknown, status: number, description: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ImdsError);
    assert.equal(err.status, status);
    assert.match(err.description, description);
    assert.deepEqual(Object.keys(err.body()).sort(), ['error', 'error_description']);
    return true;
  });
}

describe('IMDS routing', () => {
  test('token path is case-insensitive and tolerates a trailing slash', () => {
    for (const p of ['/metadata/identity/oauth2/token', '/METADATA/Identity/OAuth2/Token', '/metadata/identity/oauth2/token/', '/metadata/identity/oauth2/token//']) {
      assert.deepEqual(route(p), { kind: 'token' }, p);
    }
    assert.equal(normalisePath('/'), '/');
  });
  test('other /metadata paths are metadata, but nothing else under /metadata/identity', () => {
    assert.deepEqual(route('/metadata/instance/compute'), { kind: 'metadata', path: '/metadata/instance/compute' });
    assert.deepEqual(route('/metadata/identity/info'), { kind: 'not_found' });
    assert.deepEqual(route('/metadata/identity'), { kind: 'not_found' });
    assert.deepEqual(route('/latest/meta-data'), { kind: 'not_found' });
  });
});

describe('common checks', () => {
  test('missing or false Metadata header → IMDS 400', () => {
    rejects(() => checkCommon('GET', {}), 400, /^Required metadata header not specified$/);
    rejects(() => checkCommon('GET', { metadata: 'false' }), 400, /Required metadata header/);
    assert.doesNotThrow(() => checkCommon('GET', { metadata: 'True' }));
  });
  test('the bare @azure/identity probe gets an HTTP 400, not a 403 saying unreachable', () => {
    try {
      checkCommon('GET', {});
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ImdsError);
      assert.notEqual(err.status, 403);
      assert.doesNotMatch(JSON.stringify(err.body()), /unreachable/);
    }
  });
  test('X-Forwarded-For is refused, as real IMDS does', () => {
    rejects(() => checkCommon('GET', { metadata: 'true', 'x-forwarded-for': '10.0.0.9' }), 400, /X-Forwarded-For/);
  });
  test('only GET', () => rejects(() => checkCommon('POST', { metadata: 'true' }), 405, /not allowed/));
});

describe('token request parsing', () => {
  test('api-version and resource are required', () => {
    rejects(() => parseTokenRequest(q('resource=x')), 400, /api-version/);
    rejects(() => parseTokenRequest(q('api-version=2017-01-01&resource=x')), 400, /^Invalid version$/);
    rejects(() => parseTokenRequest(q('api-version=latest&resource=x')), 400, /^Invalid version$/);
    rejects(() => parseTokenRequest(q('api-version=2018-02-01')), 400, /audience/);
  });
  test('at most one identity hint', () => {
    rejects(() => parseTokenRequest(q('api-version=2018-02-01&resource=r&client_id=a&object_id=b')), 400, /Only one of/);
    rejects(() => parseTokenRequest(q('api-version=2018-02-01&resource=r&msi_res_id=a&mi_res_id=b')), 400, /Only one of/);
    rejects(() => parseTokenRequest(q('api-version=2018-02-01&resource=r&client_id=')), 400, /Empty client_id/);
  });
  test('hints, bypass_cache', () => {
    assert.deepEqual(parseTokenRequest(q('api-version=2019-08-01&resource=https://vault.azure.net')), {
      apiVersion: '2019-08-01',
      resource: 'https://vault.azure.net',
      hint: { kind: 'none' },
      bypassCache: false,
    });
    assert.deepEqual(parseTokenRequest(q('api-version=2018-02-01&resource=r&client_id=C&bypass_cache=true')).hint, { kind: 'client_id', value: 'C' });
    assert.equal(parseTokenRequest(q('api-version=2018-02-01&resource=r&bypass_cache=TRUE')).bypassCache, true);
    assert.deepEqual(parseTokenRequest(q('api-version=2018-02-01&resource=r&mi_res_id=/x')).hint, { kind: 'msi_res_id', value: '/x', param: 'mi_res_id' });
    assert.deepEqual(parseTokenRequest(q('api-version=2018-02-01&resource=r&object_id=o')).hint, { kind: 'object_id', value: 'o' });
  });
});

describe('success body', () => {
  const token = { accessToken: 'a.b.c', expiresOn: 2000, notBefore: 900 };
  test('every field a string, resource and client_id always present', () => {
    const body = tokenBody(token, 'cid', parseTokenRequest(q('api-version=2018-02-01&resource=https://r/')), 1000);
    assert.deepEqual(body, {
      access_token: 'a.b.c',
      client_id: 'cid',
      expires_in: '1000',
      expires_on: '2000',
      ext_expires_in: '1000',
      not_before: '900',
      refresh_token: '',
      resource: 'https://r/',
      token_type: 'Bearer',
    });
    for (const v of Object.values(body)) assert.equal(typeof v, 'string');
  });
  test('object_id and msi_res_id are echoed when asked for', () => {
    assert.equal(tokenBody(token, 'c', parseTokenRequest(q('api-version=2018-02-01&resource=r&object_id=O')), 1000)['object_id'], 'O');
    assert.equal(tokenBody(token, 'c', parseTokenRequest(q('api-version=2018-02-01&resource=r&mi_res_id=/id')), 1000)['msi_res_id'], '/id');
    assert.equal(tokenBody(token, 'c', parseTokenRequest(q('api-version=2018-02-01&resource=r')), 1000)['object_id'], undefined);
  });
  test('the multiple-identities text is IMDS’s', () => assert.match(MULTIPLE_IDENTITIES, /^Multiple user assigned identities exist, please specify the clientId \/ resourceId/));
});
