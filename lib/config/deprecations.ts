import type { Logger } from '../log.js';
import type { Deprecation } from './settings.js';

/** One structured warning per deprecated spelling given, naming the old and the new. */
export function logDeprecations(logger: Logger, deprecations: Deprecation[]): void {
  for (const d of deprecations) {
    logger.warn(d.ignored ? 'deprecated setting ignored: its replacement is set too' : 'deprecated setting: it works for one more release', { setting: `--${d.setting}`, deprecated: d.old, replacement: d.new });
  }
}
