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
