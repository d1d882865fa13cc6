import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TargetParser } from './parsed-target.js';
import { ImdsError, parseTokenRequest, route } from './protocol.js';
import { canonicalTarget, MalformedTarget } from './target.js';

const TARGETS = [
  '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net',
  '/metadata/%69dentity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&client_id=abc',
  '/metadata/identity%2Foauth2%2Ftoken?api-version=2018-02-01&resource=x',
  '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x&Resource=y',
  '/metadata/identity/oauth2/token?api-version=2017-01-01&resource=x',
  '/metadata/instance/compute?api-version=2021-02-01',
  '/metadata/instance/../identity/oauth2/token?api-version=2018-02-01&resource=x',
  '/other',
];

test('a remembered target is exactly what parsing it again gives, the first time and every time after', () => {
  const parser = new TargetParser();
  for (let round = 0; round < 3; round++) {
    for (const raw of TARGETS) {
      const parsed = parser.parse(raw);
      const target = canonicalTarget(raw);
      assert.deepEqual(parsed.target, target, raw);
      assert.deepEqual(parsed.route, route(target), raw);
      if (parsed.route.kind !== 'token') {
        assert.equal(parsed.token, undefined);
        continue;
      }
      let expected: unknown;
      try {
        expected = { request: parseTokenRequest(target.query) };
      } catch (err) {
        assert.ok(err instanceof ImdsError);
        expected = { error: err.description };
      }
      const got = parsed.token && 'error' in parsed.token ? { error: parsed.token.error.description } : parsed.token;
      assert.deepEqual(got, expected, raw);
    }
  }
});

test('a malformed target is refused every time, never remembered', () => {
  const parser = new TargetParser();
  for (let i = 0; i < 3; i++) assert.throws(() => parser.parse('/metadata/%zz'), MalformedTarget);
  assert.throws(() => parser.parse('http://169.254.169.254/metadata'), MalformedTarget);
});

test('a flood of distinct targets keeps the memo bounded and every answer right', () => {
  const parser = new TargetParser();
  for (let i = 0; i < 5000; i++) {
    const raw = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://r${i}.example`;
    const parsed = parser.parse(raw);
    assert.ok(parsed.token && 'request' in parsed.token);
    assert.equal(parsed.token.request.resource, `https://r${i}.example`);
  }
  assert.ok((parser as unknown as { memo: Map<string, unknown> }).memo.size <= 512);
});

test('memo poisoning by prototype keys: targets named like Object.prototype members are parsed, remembered and answered like any other', () => {
  const parser = new TargetParser();
  for (const raw of ['__proto__', '/__proto__', '/constructor', '/hasOwnProperty', '/toString?api-version=1']) {
    for (let round = 0; round < 2; round++) {
      if (!raw.startsWith('/')) {
        assert.throws(() => parser.parse(raw), MalformedTarget);
        continue;
      }
      const parsed = parser.parse(raw);
      assert.deepEqual(parsed.route, route(canonicalTarget(raw)), raw);
      assert.equal(parsed.token, undefined, raw);
    }
  }
  const token = parser.parse('/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&__proto__=x');
  assert.ok(token.token && 'request' in token.token);
  assert.equal(token.token.request.resource, 'https://vault.azure.net');
});

test('the last-target shortcut: back-to-back targets that differ only in a parameter\'s case, encoding, order, duplication or past the memo\'s length bound each get their own meaning', () => {
  const base = '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net';
  const long = (tail: string) => `${base}&client_id=${'a'.repeat(2100)}${tail}`;
  const sequences = [
    [base, `${base}&client_id=x`, `${base}&client_id=x`, `${base}&Client_Id=x`, base],
    [base, `${base}&resource=https://management.azure.com`, base],
    [`${base}&client_id=x`, `${base}%26client_id%3Dx`, `${base}&client_id=x`],
    [`${base}&client_id=x`, `/metadata/identity/oauth2/token?client_id=x&resource=https://vault.azure.net&api-version=2018-02-01`, `${base}&client_id=x`],
    [`${base}&client_id=x`, `${base}&client_id=x&client_id=y`, `${base}&client_id=x`],
    [long('1'), long('2'), long('2'), base, long('1'), base],
  ];
  for (const sequence of sequences) {
    const parser = new TargetParser();
    for (const raw of sequence) {
      const parsed = parser.parse(raw);
      const expected = canonicalTarget(raw);
      let request: unknown;
      try {
        request = parseTokenRequest(expected.query);
      } catch (err) {
        assert.ok(err instanceof ImdsError);
        request = err.description;
      }
      const got = parsed.token && 'error' in parsed.token ? parsed.token.error.description : parsed.token?.request;
      assert.deepEqual(got, request, raw.slice(-60));
      assert.deepEqual([...parsed.target.query], [...expected.query], raw.slice(-60));
    }
  }
});
