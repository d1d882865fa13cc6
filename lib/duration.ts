/**
 * Durations as flags write them: `500ms`, `15s`, `2m`, `1h`, or combined (`1m30s`). A bare number is
 * refused: `5` could mean seconds or milliseconds. Returns milliseconds, or undefined when `text` is not a
 * duration (the caller names the flag in its error).
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(trimmed)) return undefined;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const [, n, , u] of trimmed.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * unit[u!]!;
  return Math.round(total);
}

/** `1500` → `1.5s`, `600000` → `10m`: how flag defaults and errors show a duration. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}
