import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import winston from 'winston';
import Transport from 'winston-transport';
import { AuditLog, type AuditRecord } from './audit.js';

class Lines extends Transport {
  lines: Record<string, unknown>[] = [];
  override log(info: Record<string, unknown>, next: () => void): void {
    this.lines.push(info);
    next();
  }
}

function setup(maxKeys = 100) {
  const sink = new Lines();
  const logger = winston.createLogger({ level: 'info', transports: [sink] });
  // A window long enough that only explicit flushes end it.
  return { sink, audit: new AuditLog(logger, { windowMs: 3_600_000, maxKeys }) };
}

const issued = (over: Partial<AuditRecord> = {}): AuditRecord => ({
  message: 'token issued',
  result: 'issued',
  status: 200,
  sourceIp: '10.0.0.5',
  pod: 'a',
  namespace: 'app',
  podIdentity: 'reader',
  clientId: 'c1',
  mode: 'Federated',
  resource: 'https://vault.azure.net',
  cacheHit: true,
  durationMs: 0.2,
  ...over,
});

describe('audit log', () => {
  test('the first of a decision is written at once; repeats become one summary line with their count', () => {
    const { sink, audit } = setup();
    for (let i = 0; i < 500; i++) audit.record(issued({ durationMs: i === 7 ? 3 : 0.2 }));
    assert.equal(sink.lines.length, 1);
    assert.equal(sink.lines[0]!['message'], 'token issued');
    audit.stop();
    assert.equal(sink.lines.length, 2);
    assert.equal(sink.lines[1]!['message'], 'token issued (repeated)');
    assert.equal(sink.lines[1]!['repeats'], 499);
    assert.equal(sink.lines[1]!['maxDurationMs'], 3);
    assert.equal(sink.lines[1]!['pod'], 'a');
  });

  test('different pods, identities, outcomes and cache results are separate decisions', () => {
    const { sink, audit } = setup();
    audit.record(issued());
    audit.record(issued({ pod: 'b', sourceIp: '10.0.0.6' }));
    audit.record(issued({ clientId: 'c2', podIdentity: 'writer' }));
    audit.record(issued({ cacheHit: false }));
    audit.record(issued({ message: 'token denied', result: 'denied', status: 400, reason: 'unbound' }));
    assert.equal(sink.lines.length, 5);
    audit.stop();
    assert.equal(sink.lines.length, 5, 'nothing repeated, so no summaries');
  });

  test('after a window ends, the next decision is written at once again', () => {
    const { sink, audit } = setup();
    audit.record(issued());
    audit.flush();
    audit.record(issued());
    assert.equal(sink.lines.length, 2);
    audit.stop();
  });

  test('beyond maxKeys distinct decisions, every decision is written on its own', () => {
    const { sink, audit } = setup(1);
    audit.record(issued());
    audit.record(issued({ pod: 'b' }));
    audit.record(issued({ pod: 'b' }));
    assert.equal(sink.lines.length, 3);
    audit.stop();
  });
});
