import { parseArgs } from 'node:util';
import { ConfigError } from './errors.js';

/** One setting of a program: its flag, where else it may come from, and how `--help` describes it. */
export interface FlagSpec {
  help: string;
  /** Shown in `--help` and used when neither the flag nor its variable is given. */
  default?: string;
  /** `--flag` alone means true; `--flag=false` or `--flag false` turn it off. */
  boolean?: boolean;
  /**
   * The environment variable read when the flag is absent. Default `POD_IDENTITY_<FLAG>`; a name another
   * tool defines (KUBECONFIG, AZURE_*) is kept as that tool spells it; `null` for none.
   */
  env?: string | null;
  /** Names this setting had before; they keep working for one release, with a deprecation warning. */
  deprecatedEnv?: string;
  /**
   * A duration that used to be a bare number of this unit. The bare form keeps that meaning for one release,
   * under every name, with a deprecation warning; the new form is `500ms`, `15s`, `10m`.
   */
  bareNumberUnit?: 'ms' | 's';
}

export type FlagSpecs = Record<string, FlagSpec>;

/** The environment variable of a flag, by the one convention both programs follow. */
export function envName(flag: string, spec: FlagSpec): string | undefined {
  if (spec.env === null) return undefined;
  return spec.env ?? `POD_IDENTITY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

const looksLikeFlag = (arg: string | undefined): boolean => arg === undefined || arg.startsWith('-');

/**
 * `--flag=value`, `--flag value`, and a boolean `--flag` alone (true) → flag → value (the last one given wins).
 * Anything else, an unknown flag, or a flag without its value is a ConfigError naming it.
 */
export function parseFlags(argv: string[], specs: FlagSpecs): Map<string, string> {
  // parseArgs has no "boolean that may also take a value": a boolean flag with nothing after it is rewritten.
  const args = argv.map((arg, i) => (arg.startsWith('--') && !arg.includes('=') && specs[arg.slice(2)]?.boolean && looksLikeFlag(argv[i + 1]) ? `${arg}=true` : arg));
  const options = Object.fromEntries(Object.keys(specs).map((name) => [name, { type: 'string' as const }]));
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  const out = new Map<string, string>();
  for (const token of tokens) {
    if (token.kind === 'positional') throw new ConfigError(token.value, 'unexpected argument');
    if (token.kind === 'option-terminator') throw new ConfigError('--', 'unexpected argument');
    if (!(token.name in specs) || token.rawName !== `--${token.name}`) throw new ConfigError(token.name, 'unknown flag');
    if (token.value === undefined) throw new ConfigError(token.name, 'needs a value');
    out.set(token.name, token.value);
  }
  return out;
}

/** The `--help` table: every flag with its variable and default. */
export function usageLines(specs: FlagSpecs): string[] {
  return Object.entries(specs).map(([name, spec]) => {
    const env = envName(name, spec);
    const notes = [env && `env ${env}`, spec.default !== undefined && `default ${spec.default}`].filter(Boolean).join(', ');
    return `  --${name.padEnd(28)} ${spec.help}${notes ? ` (${notes})` : ''}`;
  });
}
