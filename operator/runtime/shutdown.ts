import type { Logger } from '../../lib/log.js';

/**
 * An AbortSignal that aborts on the first SIGTERM/SIGINT. A second signal, or `forceExitAfterMs` after the
 * first, exits the process so a stuck drain can't hang a pod's termination forever.
 */
export function shutdownSignal(options: { logger?: Logger; forceExitAfterMs?: number; signals?: NodeJS.Signals[] } = {}): AbortSignal {
  const controller = new AbortController();
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      options.logger?.warn('second signal: exiting now', { signal: sig });
      process.exit(1);
    }
    options.logger?.info('shutting down', { signal: sig });
    controller.abort(new Error(`received ${sig}`));
    if (options.forceExitAfterMs) {
      setTimeout(() => {
        options.logger?.error('graceful shutdown exceeded its deadline; exiting', { deadlineMs: options.forceExitAfterMs });
        process.exit(1);
      }, options.forceExitAfterMs).unref();
    }
  };
  for (const sig of signals) process.on(sig, onSignal);
  return controller.signal;
}

/**
 * Runs `work` until `signal` aborts and `work` resolves (it should drain and release the lease itself, as
 * `Operator.start` does), then closes `servers` (probes and metrics stay up during the drain).
 */
export async function runUntilShutdown(
  work: (signal: AbortSignal) => Promise<void>,
  signal: AbortSignal,
  servers: { close(): Promise<void> }[] = [],
): Promise<void> {
  try {
    await work(signal);
  } finally {
    await Promise.allSettled(servers.map((s) => s.close()));
  }
}
