import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

/** What `--version` prints and `podidentity_<program>_build_info` carries. */
export interface BuildInfo {
  version: string;
  nodeVersion: string;
  commit: string;
}

/** Set by the image build (`--build-arg COMMIT=$(git rev-parse HEAD)`, see config/README.md). */
export const COMMIT_ENV = 'PODIDENTITY_COMMIT';
const PACKAGE_NAME = 'pod-identity-operator';

let cachedVersion: string | undefined;

/**
 * The version in package.json: the one version of a release, shared by both programs and the image tags.
 * Found by walking up from this module, because it sits at lib/ in the repository and at dist/lib/ in the images.
 */
export function packageVersion(): string {
  if (cachedVersion) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === PACKAGE_NAME && pkg.version) return (cachedVersion = pkg.version);
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json of ${PACKAGE_NAME} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export function buildInfo(env: NodeJS.ProcessEnv = process.env): BuildInfo {
  const commit = env[COMMIT_ENV]?.trim();
  return { version: packageVersion(), nodeVersion: process.version, commit: commit || 'unknown' };
}

/** The line `--version` prints. */
export function versionText(program: 'operator' | 'agent', info: BuildInfo = buildInfo()): string {
  return `pod-identity ${program} ${info.version} (node ${info.nodeVersion}, commit ${info.commit})\n`;
}

/**
 * Node's default process metrics and the build_info gauge, the same way in both programs. The default metrics
 * keep their standard unprefixed names (process_*, nodejs_*), as every Node exporter and kube-prometheus'
 * dashboards name them; Prometheus' `job` label tells the two programs apart.
 */
export function registerProcessMetrics(registry: Registry, program: 'operator' | 'agent', info: BuildInfo = buildInfo()): void {
  const name = `podidentity_${program}_build_info`;
  if (registry.getSingleMetric(name)) return;
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name,
    help: `Always 1; the labels say which build of the ${program} runs.`,
    labelNames: ['version', 'node_version', 'commit'],
    registers: [registry],
  }).set({ version: info.version, node_version: info.nodeVersion, commit: info.commit }, 1);
}
