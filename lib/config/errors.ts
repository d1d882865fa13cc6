/**
 * A setting that cannot be used as given. `flag` names the setting by its flag; the message also names the
 * environment variable when the value came from one, so the operator of a pod can find what to fix.
 */
export class ConfigError extends Error {
  constructor(
    readonly flag: string,
    message: string,
    readonly source?: string,
  ) {
    super(`--${flag}${source ? ` (from ${source})` : ''}: ${message}`);
    this.name = 'ConfigError';
  }
}
