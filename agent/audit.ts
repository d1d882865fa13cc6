import type { Logger } from '../lib/log.js';

/** One token decision, as the audit log records it. Never the token. */
export interface AuditRecord {
  message: string;
  result: string;
  status: number;
  sourceIp: string | undefined;
  pod?: string | undefined;
  namespace?: string | undefined;
  podIdentity?: string | undefined;
  clientId?: string | undefined;
  mode?: string | undefined;
  resource?: string | undefined;
  cacheHit: boolean;
  reason?: string | undefined;
  durationMs: number;
}

export interface AuditLogOptions {
  /** How long identical decisions are counted into one summary line instead of one line each. */
  windowMs: number;
  /** Distinct decisions tracked per window; beyond this every decision is written on its own. */
  maxKeys: number;
}

/** What makes two records the same decision: every field but the message and the duration. */
export function auditKey(r: AuditRecord): string {
  return `${r.result}\u0000${r.status}\u0000${r.sourceIp ?? ''}\u0000${r.namespace ?? ''}\u0000${r.pod ?? ''}\u0000${r.podIdentity ?? ''}\u0000${r.clientId ?? ''}\u0000${r.mode ?? ''}\u0000${r.resource ?? ''}\u0000${r.cacheHit}\u0000${r.reason ?? ''}`;
}

interface Repeats {
  first: AuditRecord;
  count: number;
  maxDurationMs: number;
}

/**
 * The agent's audit trail. The first of each distinct decision (same pod, identity, resource, outcome) in a
 * window is written at once; repeats within the window are counted and written as one summary line when it
 * ends. A pod polling its cached token thousands of times a second thus costs a line per window, not a line
 * per request, and no decision goes unrecorded.
 */
export class AuditLog {
  private repeats = new Map<string, Repeats>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly logger: Logger,
    private readonly options: AuditLogOptions = { windowMs: 10_000, maxKeys: 10_000 },
  ) {
    this.timer = setInterval(() => this.flush(), options.windowMs);
    this.timer.unref();
  }

  record(r: AuditRecord): void {
    this.recordKeyed(auditKey(r), r.durationMs, () => r);
  }

  /**
   * `record` for a caller that already holds the decision's key (`auditKey` of the record `build` returns):
   * a repeat costs no record and no key.
   */
  recordKeyed(key: string, durationMs: number, build: () => AuditRecord): void {
    const seen = this.repeats.get(key);
    if (seen) {
      seen.count++;
      if (durationMs > seen.maxDurationMs) seen.maxDurationMs = durationMs;
      return;
    }
    const r = build();
    if (this.repeats.size < this.options.maxKeys) this.repeats.set(key, { first: r, count: 0, maxDurationMs: 0 });
    this.write(r);
  }

  /** Writes the summaries of the window that ends now. */
  flush(): void {
    const ended = this.repeats;
    this.repeats = new Map();
    for (const { first, count, maxDurationMs } of ended.values()) {
      if (count === 0) continue;
      const { message, durationMs: _first, ...fields } = first;
      this.logger.info(`${message} (repeated)`, { audit: true, ...fields, repeats: count, windowSeconds: this.options.windowMs / 1000, maxDurationMs });
    }
  }

  /** Flushes and stops the window timer. */
  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }

  private write(r: AuditRecord): void {
    const { message, ...fields } = r;
    this.logger.info(message, { audit: true, ...fields });
  }
}
