import type { Logger } from '../../lib/log.js';
import type { AgentMetrics } from '../metrics.js';
import type { IptablesBackend } from './iptables.js';
import { findDrift, IMDS_IP, IMDS_PORT, parseSave, renderRemoval, renderRestore, type InterceptionSpec } from './rules.js';

/**
 * Owns the interception rules on this node: installs them, checks them for drift and repairs them, and
 * removes them only when told to (uninstall). Stopping the agent deliberately leaves them in place.
 */
export class Interceptor {
  private timer?: NodeJS.Timeout;
  private inPlace = false;
  private checking?: Promise<void>;

  constructor(
    private readonly backend: IptablesBackend,
    private readonly spec: InterceptionSpec,
    private readonly metrics: AgentMetrics,
    private readonly logger: Logger,
  ) {}

  /** True after the last check found (or made) the rules as they should be. */
  rulesInPlace(): boolean {
    return this.inPlace;
  }

  /** Writes the rules, then drops conntrack entries to IMDS so flows opened before them can't bypass them. */
  async install(): Promise<void> {
    await this.sync('install');
    try {
      const flushed = await this.backend.flushConntrack(IMDS_IP, IMDS_PORT);
      if (!flushed) this.logger.warn('conntrack not found; IMDS connections opened before the rules are not flushed');
    } catch (err) {
      this.logger.warn('conntrack flush failed', { err });
    }
  }

  /** One drift check; rewrites the rules when anything differs. Concurrent callers share one check. */
  check(): Promise<void> {
    this.checking ??= this.sync('check').finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async sync(reason: 'install' | 'check'): Promise<void> {
    this.metrics.iptablesSyncs.inc();
    try {
      const state = parseSave(await this.backend.save());
      const drift = findDrift(this.spec, state);
      if (drift.length === 0) {
        this.inPlace = true;
        return;
      }
      if (reason === 'check') {
        this.metrics.iptablesRepairs.inc();
        this.logger.warn('interception rules drifted; repairing', { drift, binary: this.backend.binary });
      }
      await this.backend.restore(renderRestore(this.spec, state));
      const after = findDrift(this.spec, parseSave(await this.backend.save()));
      if (after.length) throw new Error(`rules still differ after restore: ${after.join('; ')}`);
      this.inPlace = true;
      if (reason === 'install') this.logger.info('interception rules installed', { binary: this.backend.binary, target: `${this.spec.agentIp}:${this.spec.agentPort}`, hostNetwork: this.spec.interceptHostNetwork });
    } catch (err) {
      this.inPlace = false;
      this.metrics.iptablesErrors.inc();
      this.logger.error('iptables sync failed', { err, binary: this.backend.binary });
      throw err;
    }
  }

  startDriftChecks(intervalMs: number): void {
    this.timer = setInterval(() => void this.check().catch(() => undefined), intervalMs);
    this.timer.unref();
  }

  /** Stops checking. The rules stay: while the agent is down, pods are refused, not sent to the real IMDS. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Removes every chain and jump the agent owns. Idempotent; the only path that removes the rules. */
export async function uninstall(backend: IptablesBackend): Promise<boolean> {
  const input = renderRemoval(parseSave(await backend.save()));
  if (!input) return false;
  await backend.restore(input);
  return true;
}
