import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { createLogger } from './log.js';

function capture(): { logger: winston.Logger; lines: () => string } {
  let out = '';
  const logger = createLogger('test', 'debug');
  logger.clear();
  logger.add(new winston.transports.Stream({ stream: new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) }) }));
  return { logger, lines: () => out };
}

const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLWJ5dGVz';

test('secret fields are redacted', () => {
  const { logger, lines } = capture();
  logger.info('issued', { access_token: 'abc', client_secret: 's3cr3t', nested: { assertion: 'x' }, clientId: 'keep-me' });
  const line = lines();
  assert.doesNotMatch(line, /abc|s3cr3t|"x"/);
  assert.match(line, /keep-me/);
  assert.match(line, /"component":"test"/);
});

test('JWT-shaped strings are redacted anywhere, including messages and errors', () => {
  const { logger, lines } = capture();
  logger.warn(`upstream said ${jwt}`, { detail: `Bearer ${jwt}`, err: new Error(`bad ${jwt}`) });
  assert.doesNotMatch(lines(), /eyJhbGci/);
  assert.match(lines(), /\[REDACTED\]/);
});
