import type { Logger } from '../log.js';

export interface ShutdownOptions {
  logger?: Logger;
  /** After the first signal, exit anyway this long later, so a stuck drain can't outlive the pod's grace period. */
  forceExitAfterMs?: number;
  signals?: NodeJS.Signals[];
  /** process.exit, unless a test watches it. */
  exit?: (code: number) => void;
}

/**
 * An AbortSignal that aborts on the first SIGTERM/SIGINT. A second signal, or `forceExitAfterMs` after the
 * first, exits the process with 1.
 */
export function shutdownSignal(options: ShutdownOptions = {}): AbortSignal {
  const controller = new AbortController();
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      options.logger?.warn('second signal: exiting now', { signal: sig });
      exit(1);
      return;
    }
    options.logger?.info('shutting down', { signal: sig });
    controller.abort(new Error(`received ${sig}`));
    if (options.forceExitAfterMs !== undefined) {
      setTimeout(() => {
        options.logger?.error('graceful shutdown exceeded its deadline; exiting', { deadlineMs: options.forceExitAfterMs });
        exit(1);
      }, options.forceExitAfterMs).unref();
    }
  };
  for (const sig of options.signals ?? ['SIGTERM', 'SIGINT']) process.on(sig, onSignal);
  return controller.signal;
}

/** Resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
