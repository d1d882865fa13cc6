import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { redactAnswer, proxyAllowed } from './metadata-allowlist.js';
import { canonicalResource, checkCommon, ImdsError, MULTIPLE_IDENTITIES, parseTokenRequest, route, tokenBody, tokenQuery } from './protocol.js';
import { canonicalTarget, MalformedTarget } from './target.js';

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

const routeOf = (raw: string) => route(canonicalTarget(raw));

describe('canonical request target', () => {
  test('decoded once, backslash read as a separator, empty and dot segments resolved, case kept', () => {
    const cases: [string, string][] = [
      ['/metadata/%69dentity/oauth2/token', '/metadata/identity/oauth2/token'],
      ['/metadata/IDENTIT%59/oauth2/token', '/metadata/IDENTITY/oauth2/token'],
      ['/metadata/identity%2Foauth2%2Ftoken', '/metadata/identity/oauth2/token'],
      ['/metadata\\identity%5Coauth2\\token', '/metadata/identity/oauth2/token'],
      ['//metadata//instance/./compute/../network/', '/metadata/instance/network'],
      ['/metadata/instance/%2e%2e/%2E%2E/../x', '/x'],
      ['/', '/'],
    ];
    for (const [raw, path] of cases) {
      const target = canonicalTarget(`${raw}?a=1`);
      assert.equal(target.path, path, raw);
      assert.equal(target.key, path.toLowerCase());
      assert.equal(target.query.get('a'), '1');
    }
  });
  test('separators spelled %2F, %5C or backslash are flagged', () => {
    for (const raw of ['/a%2Fb', '/a%2fb', '/a%5Cb', '/a\\b']) assert.equal(canonicalTarget(raw).disguisedSeparator, true, raw);
    for (const raw of ['/a/b', '/a/%2e/b', '/%61']) assert.equal(canonicalTarget(raw).disguisedSeparator, false, raw);
  });
  test('what cannot be made canonical is refused: double encoding, decoded ?, #, ;, NUL, bad escapes, non-path targets', () => {
    for (const raw of ['/a%2525', '/a%3Fb', '/a%23b', '/a;b', '/a%00', '/a%zz', '/a%e2%82', 'http://169.254.169.254/metadata/instance', '*', '/a b']) {
      assert.throws(() => canonicalTarget(raw), MalformedTarget, raw);
    }
  });
});

describe('IMDS routing', () => {
  test('token path is case-insensitive and tolerates a trailing slash, however it is spelled', () => {
    for (const p of ['/metadata/identity/oauth2/token', '/METADATA/Identity/OAuth2/Token', '/metadata/identity/oauth2/token/', '/metadata/identity/oauth2/token//', '/metadata/%69dentity/oauth2/token', '/metadata/instance/../identity%2Foauth2%2Ftoken']) {
      assert.deepEqual(routeOf(p), { kind: 'token' }, p);
    }
  });
  test('nothing else under /metadata/identity is routed anywhere but not_found', () => {
    for (const p of ['/metadata/identity', '/metadata/identity/info', '/metadata/%69dentity/info', '/metadata/instance/../identity/oauth2', '/metadata/identity%2Finfo']) {
      assert.deepEqual(routeOf(p), { kind: 'not_found' }, p);
    }
    assert.deepEqual(routeOf('/latest/meta-data'), { kind: 'not_found' });
  });
  test('allowed metadata paths route with their canonical path; others are not allowed', () => {
    assert.deepEqual(routeOf('/metadata/instance/compute/vmId'), { kind: 'metadata', path: '/metadata/instance/compute/vmId', key: '/metadata/instance/compute/vmid' });
    assert.deepEqual(routeOf('/Metadata/./Versions/'), { kind: 'metadata', path: '/Metadata/Versions', key: '/metadata/versions' });
    for (const p of ['/metadata', '/metadata/attested/document', '/metadata/instance/compute/userData', '/metadata/instance/compute/customData/x', '/metadata/loadbalancer/x', '/metadata/new']) {
      assert.deepEqual(routeOf(p), { kind: 'not_allowed' }, p);
    }
    assert.deepEqual(routeOf('/metadata/instance%2Fcompute'), { kind: 'disguised_separator' });
  });
});

describe('metadata allow-list', () => {
  test('subtree entries allow leaves; exact entries only themselves', () => {
    assert.equal(proxyAllowed('/metadata/instance/network/interface/0/ipv4/ipaddress/0/privateipaddress'), true);
    assert.equal(proxyAllowed('/metadata/instancex'), false);
    assert.equal(proxyAllowed('/metadata/scheduledevents'), true);
    assert.equal(proxyAllowed('/metadata/scheduledevents/x'), false);
  });
  test('user and custom data are taken out of the documents that hold them; unreadable documents are refused', () => {
    const full = JSON.stringify({ compute: { vmId: 'v', userData: 'c2VjcmV0', customData: 'x' }, network: {} });
    assert.deepEqual(JSON.parse(redactAnswer('/metadata/instance', 200, full)!), { compute: { vmId: 'v' }, network: {} });
    assert.deepEqual(JSON.parse(redactAnswer('/metadata/instance/compute', 200, JSON.stringify({ vmId: 'v', userData: 'u' }))!), { vmId: 'v' });
    assert.equal(redactAnswer('/metadata/instance', 200, 'not json'), undefined);
    assert.equal(redactAnswer('/metadata/instance', 400, 'not json'), 'not json');
    assert.equal(redactAnswer('/metadata/instance/compute/vmid', 200, 'v'), 'v');
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
  test('only GET: other methods get 405 with Allow: GET, before the header checks', () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', undefined]) {
      rejects(() => checkCommon(method, {}), 405, /not allowed: only GET is supported$/);
      assert.throws(() => checkCommon(method, { metadata: 'true' }), (err: ImdsError) => err.headers['Allow'] === 'GET');
    }
  });
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
  test('a parameter given twice, in any letter case, is refused', () => {
    for (const name of ['resource', 'api-version', 'client_id', 'object_id', 'msi_res_id', 'mi_res_id', 'bypass_cache']) {
      rejects(() => parseTokenRequest(q(`api-version=2018-02-01&resource=r&${name}=1&${name.toUpperCase()}=1`)), 400, new RegExp(`^Query parameter '${name}' is specified more than once$`));
    }
  });
  test('a scope names its resource; whitespace in a resource is refused', () => {
    assert.equal(canonicalResource('https://vault.azure.net/.default'), 'https://vault.azure.net');
    assert.equal(canonicalResource('https://management.azure.com//.DEFAULT'), 'https://management.azure.com/');
    assert.equal(canonicalResource('https://vault.azure.net'), 'https://vault.azure.net');
    assert.equal(canonicalResource('api://x/.default/.default'), 'api://x/.default', 'one suffix only: scopeFor adds it back, so aud and echo still agree');
    assert.equal(parseTokenRequest(q('api-version=2018-02-01&resource=https://vault.azure.net/.default')).resource, 'https://vault.azure.net');
    rejects(() => canonicalResource('/.default'), 400, /audience/);
    rejects(() => canonicalResource('a/.default b/.default'), 400, /^Invalid resource/);
    rejects(() => canonicalResource('a\nb'), 400, /^Invalid resource/);
  });
  test('the forwarded query is exactly what was parsed', () => {
    const parsed = parseTokenRequest(q('API-VERSION=2019-08-01&resource=https://r/.default&Mi_Res_Id=/x&extra=1&bypass_cache=true'));
    assert.equal(tokenQuery(parsed).toString(), 'api-version=2019-08-01&resource=https%3A%2F%2Fr&mi_res_id=%2Fx&bypass_cache=true');
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
