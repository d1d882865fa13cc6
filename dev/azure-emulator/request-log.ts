/** Every request the emulator answers (ARM, Azure AD and IMDS), with per-route counts for tests and benchmarks. */

export interface RequestLogEntry {
  method: string;
  /** Stable route name, e.g. `identities.put`, `aad.token`, `imds.token`; `unknown` when nothing matched. */
  route: string;
  path: string;
  status: number;
  /** Epoch milliseconds when the request arrived. */
  at: number;
  durationMs: number;
  /** Set when a fault rule shaped the answer. */
  fault?: boolean;
}

export class RequestLog {
  private entries: RequestLogEntry[] = [];
  private tally = new Map<string, number>();

  constructor(private readonly maxEntries = 200_000) {}

  record(entry: RequestLogEntry): void {
    this.entries.push(entry);
    if (this.entries.length > this.maxEntries) this.entries.splice(0, this.entries.length - this.maxEntries);
    const key = `${entry.method} ${entry.route}`;
    this.tally.set(key, (this.tally.get(key) ?? 0) + 1);
  }

  log(): RequestLogEntry[] {
    return [...this.entries];
  }

  /** Counts keyed `"METHOD route"`, e.g. `{"PUT identities.put": 3}`. Never truncated. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.tally);
  }

  /** Requests to one route (any method). */
  count(route: string): number {
    let n = 0;
    for (const [key, value] of this.tally) if (key.slice(key.indexOf(' ') + 1) === route) n += value;
    return n;
  }

  reset(): void {
    this.entries = [];
    this.tally.clear();
  }
}
