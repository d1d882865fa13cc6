import { versionText } from '../lib/build-info.js';
import { logDeprecations } from '../lib/config/deprecations.js';
import { aborted, shutdownSignal } from '../lib/process/signals.js';
import { createLogger } from '../lib/log.js';
import { ConfigError, loadConfig, loadUninstallConfig, usage } from './config.js';
import { startAgent } from './agent.js';
import { selectIptables } from './interception/iptables.js';
import { uninstall } from './interception/interceptor.js';

/**
 * agent run [flags]        serve IMDS for this node's pods (the default)
 * agent uninstall [flags]  remove the interception rules; the only command that does
 * agent version             (or --version) the version, Node.js version and commit
 */
async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  const command = first && !first.startsWith('-') ? first : 'run';
  const args = command === first ? rest : argv;
  if (command === 'help' || args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (command === 'version' || args.includes('--version')) {
    process.stdout.write(versionText('agent'));
    return 0;
  }
  if (command === 'uninstall') {
    const config = loadUninstallConfig(args);
    const logger = createLogger('agent', config.logLevel);
    logDeprecations(logger, config.deprecations);
    const backend = await selectIptables(config.iptablesMode, config.iptablesBinary);
    const removed = await uninstall(backend);
    logger.info(removed ? 'interception rules removed; pods can reach the node IMDS again' : 'no interception rules to remove', { binary: backend.binary });
    return 0;
  }
  if (command !== 'run') throw new ConfigError(command, 'unknown command (run, uninstall)');
  const config = loadConfig(args);
  const logger = createLogger('agent', config.logLevel);
  logDeprecations(logger, config.deprecations);
  const agent = await startAgent(config, logger);
  // Only once serving: a signal during start-up keeps its default meaning (exit now). The deadline fits the
  // DaemonSet's 30 s grace period.
  await aborted(shutdownSignal({ logger, forceExitAfterMs: 25_000 }));
  // The interception rules are deliberately left in place: only `agent uninstall` removes them.
  logger.info('stopping; interception rules stay in place');
  await agent.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`agent: ${err.message}\n\n${usage()}\n`);
      process.exit(2);
    }
    process.stderr.write(`agent: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
