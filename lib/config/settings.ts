import { isIP } from 'node:net';
import { formatDuration, parseDuration } from '../duration.js';
import { ConfigError } from './errors.js';
import { envName, parseFlags, type FlagSpec, type FlagSpecs } from './flags.js';

/** A deprecated spelling that was given, and the one that replaces it. Both programs log each once. */
export interface Deprecation {
  setting: string;
  old: string;
  new: string;
  /** The old spelling was given but a new one was too, and won. */
  ignored?: boolean;
}

interface Found {
  value: string;
  /** The environment variable it came from; undefined for a flag or the default. */
  env?: string;
}

/** A deprecated variable that was given but lost to its replacement (`by`: the flag or the new variable). */
interface Shadowed {
  value: string;
  env: string;
  by: string;
}

/**
 * Typed, validated settings from flags, then the environment, then defaults. Every error is a ConfigError
 * naming the flag, the variable the value came from, and the value; deprecated spellings are collected in
 * `deprecations`, one entry per setting.
 */
export class Settings {
  private readonly found = new Map<string, Found | undefined>();
  private readonly deprecated = new Map<string, Deprecation>();
  private readonly shadowed = new Map<string, Shadowed>();

  constructor(
    private readonly specs: FlagSpecs,
    private readonly flags: Map<string, string>,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  static fromArgv(specs: FlagSpecs, argv: string[], env: NodeJS.ProcessEnv): Settings {
    return new Settings(specs, parseFlags(argv, specs), env);
  }

  /** In the order of the flag table, whatever order the settings were read in. */
  get deprecations(): Deprecation[] {
    const order = Object.keys(this.specs);
    return [...this.deprecated.values()].sort((a, b) => order.indexOf(a.setting) - order.indexOf(b.setting));
  }

  /** The value as given, or undefined (an empty value counts as not given). */
  raw(flag: string): string | undefined {
    return this.agreed(flag, this.value(flag), (s) => s.raw(flag));
  }

  required(flag: string): string {
    return this.agreed(flag, this.requiredValue(flag), (s) => s.required(flag));
  }

  private value(flag: string): string | undefined {
    return this.lookup(flag)?.value;
  }

  private requiredValue(flag: string): string {
    const v = this.value(flag);
    if (v === undefined) {
      const env = envName(flag, this.spec(flag));
      throw new ConfigError(flag, `required${env ? ` (or env ${env})` : ''}`);
    }
    return v;
  }

  fail(flag: string, message: string): never {
    throw new ConfigError(flag, message, this.lookup(flag)?.env);
  }

  oneOf<T extends string>(flag: string, allowed: readonly T[]): T {
    const v = this.requiredValue(flag);
    if (!(allowed as readonly string[]).includes(v)) this.fail(flag, `must be one of ${allowed.join(', ')}, got "${v}"`);
    return this.agreed(flag, v as T, (s) => s.oneOf(flag, allowed));
  }

  int(flag: string, min: number, max: number): number {
    const v = this.requiredValue(flag).trim();
    if (!/^\d+$/.test(v)) this.fail(flag, `must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) this.fail(flag, `must be between ${min} and ${max}, got ${n}`);
    return this.agreed(flag, n, (s) => s.int(flag, min, max));
  }

  optionalInt(flag: string, min: number, max: number): number | undefined {
    return this.value(flag) === undefined ? undefined : this.int(flag, min, max);
  }

  bool(flag: string): boolean {
    const v = this.requiredValue(flag).trim().toLowerCase();
    let b: boolean;
    if (['true', '1', 'yes'].includes(v)) b = true;
    else if (['false', '0', 'no'].includes(v)) b = false;
    else return this.fail(flag, `must be true or false, got "${v}"`);
    return this.agreed(flag, b, (s) => s.bool(flag));
  }

  /** Milliseconds, from `500ms`, `15s`, `10m`, `1h` (or a bare number of the setting's old unit, deprecated). */
  duration(flag: string, minMs: number, maxMs: number): number {
    const v = this.requiredValue(flag).trim();
    const unit = this.spec(flag).bareNumberUnit;
    let ms = parseDuration(v);
    if (ms === undefined && unit && /^\d+$/.test(v)) {
      ms = Number(v) * (unit === 's' ? 1000 : 1);
      this.deprecateBareNumber(flag, v, ms);
    }
    if (ms === undefined) return this.fail(flag, `must be a duration such as 500ms, 15s or 10m, got "${v}"`);
    if (ms < minMs || ms > maxMs) this.fail(flag, `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)}, got "${v}"`);
    return this.agreed(flag, ms, (s) => s.duration(flag, minMs, maxMs));
  }

  url(flag: string, protocols: string[]): string {
    const v = this.requiredValue(flag);
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      return this.fail(flag, `must be a URL, got "${v}"`);
    }
    if (!protocols.includes(parsed.protocol)) this.fail(flag, `must use ${protocols.join(' or ')}, got "${v}"`);
    return this.agreed(flag, v.replace(/\/+$/, ''), (s) => s.url(flag, protocols));
  }

  ipv4(flag: string, fallback?: string): string {
    const v = this.value(flag) ?? fallback;
    if (v === undefined) return this.requiredValue(flag);
    if (isIP(v) !== 4) this.fail(flag, `must be an IPv4 address, got "${v}"`);
    return this.agreed(flag, v, (s) => s.ipv4(flag, fallback));
  }

  /**
   * `value` if a deprecated variable that lost to it (to the flag or the new variable) means the same, read the
   * same way; otherwise a ConfigError naming both. Deciding for either would silently drop a setting someone
   * gave on purpose, and the one dropped may be the stricter (a protection turned on under the old name).
   */
  private agreed<T>(flag: string, value: T, read: (s: Settings) => T): T {
    const lost = this.shadowed.get(flag);
    if (!lost) return value;
    let meant: T | undefined;
    try {
      meant = read(new Settings(this.specs, new Map(), { [lost.env]: lost.value }));
    } catch {
      meant = undefined;
    }
    if (meant !== value) {
      throw new ConfigError(flag, `${lost.env}="${lost.value}" (deprecated) and ${lost.by} disagree: remove ${lost.env}, or give it the same setting`);
    }
    return value;
  }

  private spec(flag: string): FlagSpec {
    const spec = this.specs[flag];
    if (!spec) throw new Error(`no such setting: --${flag}`);
    return spec;
  }

  private lookup(flag: string): Found | undefined {
    if (this.found.has(flag)) return this.found.get(flag);
    const spec = this.spec(flag);
    const given = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
    const env = envName(flag, spec);
    const fromFlag = given(this.flags.get(flag));
    const fromEnv = env ? given(this.env[env]) : undefined;
    const fromOld = spec.deprecatedEnv ? given(this.env[spec.deprecatedEnv]) : undefined;
    // A deprecated variable a flag overrides is not reported (manifests set NODE_NAME only for $(NODE_NAME));
    // one that disagrees with what overrides it is refused by `agreed`.
    if (fromOld !== undefined && fromFlag === undefined) {
      this.deprecated.set(flag, { setting: flag, old: spec.deprecatedEnv!, new: env ?? `--${flag}`, ...(fromEnv !== undefined ? { ignored: true } : {}) });
    }
    if (fromOld !== undefined && (fromFlag !== undefined || fromEnv !== undefined)) {
      this.shadowed.set(flag, { value: fromOld, env: spec.deprecatedEnv!, by: fromFlag !== undefined ? `--${flag}` : env! });
    }
    let found: Found | undefined;
    if (fromFlag !== undefined) found = { value: fromFlag };
    else if (fromEnv !== undefined) found = { value: fromEnv, env };
    else if (fromOld !== undefined) found = { value: fromOld, env: spec.deprecatedEnv };
    else if (spec.default !== undefined) found = { value: spec.default };
    this.found.set(flag, found);
    return found;
  }

  private deprecateBareNumber(flag: string, value: string, ms: number): void {
    const source = this.lookup(flag)?.env;
    const env = envName(flag, this.spec(flag));
    this.deprecated.set(flag, {
      setting: flag,
      old: source ? `${source}=${value}` : `--${flag}=${value}`,
      new: source ? `${env ?? `--${flag}`}=${formatDuration(ms)}` : `--${flag}=${formatDuration(ms)}`,
    });
  }
}
