import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, FLAGS, loadConfig, loadUninstallConfig } from './config.js';

const base = ['--node-name=node-1', '--node-ip=10.0.0.4'];

function fails(argv: string[], flag: string, env: NodeJS.ProcessEnv = {}): void {
  assert.throws(() => loadConfig(argv, env), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.flag, flag);
    assert.match(err.message, new RegExp(`^--${flag}: `));
    return true;
  });
}

describe('config', () => {
  test('defaults', () => {
    const c = loadConfig(base, {});
    assert.equal(c.listenAddress, '10.0.0.4');
    assert.equal(c.listenPort, 8775);
    assert.equal(c.metricsPort, 8776);
    assert.equal(c.defaultMode, 'Federated');
    assert.equal(c.upstreamImds, 'http://169.254.169.254');
    assert.equal(c.notReadyWaitMs, 3000);
    assert.equal(c.interceptHostNetwork, false);
    assert.equal(c.metadataProxy, true);
    assert.equal(c.exceptionsConfigMap, undefined, 'IMDS exceptions are opt-in');
  });
  test('--exceptions-configmap (or EXCEPTIONS_CONFIGMAP) is <namespace>/<name>', () => {
    assert.deepEqual(loadConfig([...base, '--exceptions-configmap=podidentity-system/podidentity-imds-exceptions'], {}).exceptionsConfigMap, { namespace: 'podidentity-system', name: 'podidentity-imds-exceptions' });
    assert.deepEqual(loadConfig(base, { EXCEPTIONS_CONFIGMAP: 'ns/cm' }).exceptionsConfigMap, { namespace: 'ns', name: 'cm' });
    for (const bad of ['podidentity-imds-exceptions', 'a/b/c', '/cm', 'ns/', 'NS/cm', 'ns/Bad_Name']) fails([...base, `--exceptions-configmap=${bad}`], 'exceptions-configmap');
  });
  test('env fills in, flags win', () => {
    const c = loadConfig(['--listen-port', '9000', '--metadata-proxy=false'], { NODE_NAME: 'n', NODE_IP: '10.1.1.1', POD_IDENTITY_LISTEN_PORT: '1', DEFAULT_MODE: 'Node' });
    assert.equal(c.nodeName, 'n');
    assert.equal(c.listenPort, 9000);
    assert.equal(c.defaultMode, 'Node');
    assert.equal(c.metadataProxy, false);
  });
  test('every invalid value names its flag', () => {
    fails([], 'node-name');
    fails(['--node-name=n'], 'node-ip');
    fails([...base.slice(0, 1), '--node-ip=nope'], 'node-ip');
    fails([...base, '--listen-port=70000'], 'listen-port');
    fails([...base, '--listen-port=abc'], 'listen-port');
    fails([...base, '--default-mode=Pod'], 'default-mode');
    fails([...base, '--authority-host=http://login'], 'authority-host');
    fails([...base, '--upstream-imds=ftp://x'], 'upstream-imds');
    fails([...base, '--not-ready-wait=-1'], 'not-ready-wait');
    fails([...base, '--cache-max-entries=0'], 'cache-max-entries');
    fails([...base, '--iptables-mode=pf'], 'iptables-mode');
    fails([...base, '--bogus=1'], 'bogus');
    fails([...base, '--intercept-host-network'], 'intercept-host-network');
    fails([...base, '--metrics-port=8775'], 'metrics-port');
  });
  test('flooding limits: defaults, durations as 15s-style strings, and invalid values named', () => {
    const c = loadConfig(base, {});
    assert.equal(c.verifyWaitMs, 1000);
    assert.equal(c.verifyReadsPerSource, 100);
    assert.equal(c.verifyReadsTotal, 500);
    assert.equal(c.maxConnections, 1000);
    assert.equal(c.maxConnectionsPerSource, 100);
    assert.equal(c.headersTimeoutMs, 5000);
    assert.equal(c.requestTimeoutMs, 10_000);
    assert.equal(c.issuanceWindowMs, 600_000);
    const d = loadConfig([...base, '--verify-wait=250ms', '--headers-timeout=2s', '--issuance-window=1h'], { MAX_CONNECTIONS_PER_SOURCE: '8' });
    assert.equal(d.verifyWaitMs, 250);
    assert.equal(d.headersTimeoutMs, 2000);
    assert.equal(d.issuanceWindowMs, 3_600_000);
    assert.equal(d.maxConnectionsPerSource, 8);
    fails([...base, '--verify-wait=5'], 'verify-wait');
    fails([...base, '--headers-timeout=soon'], 'headers-timeout');
    fails([...base, '--headers-timeout=20s'], 'headers-timeout');
    fails([...base, '--max-connections=0'], 'max-connections');
    fails([...base, '--max-resources-per-identity=-1'], 'max-resources-per-identity');
  });
  test('the hostNetwork opt-in with an owner exemption', () => {
    const c = loadConfig([...base, '--intercept-host-network', '--exclude-gid=4242'], {});
    assert.equal(c.interceptHostNetwork, true);
    assert.equal(c.excludeGid, 4242);
  });
});

/** Every flag: a value to give it, the field it sets, and what the field then holds. */
const EVERY_FLAG: Record<string, [field: string, value: string, expected: unknown]> = {
  'node-name': ['nodeName', 'node-9', 'node-9'],
  'node-ip': ['nodeIp', '10.9.9.9', '10.9.9.9'],
  'listen-address': ['listenAddress', '127.0.0.9', '127.0.0.9'],
  'listen-port': ['listenPort', '9001', 9001],
  'metrics-address': ['metricsAddress', '127.0.0.8', '127.0.0.8'],
  'metrics-port': ['metricsPort', '9002', 9002],
  'default-mode': ['defaultMode', 'Node', 'Node'],
  'authority-host': ['authorityHost', 'https://login.example/', 'https://login.example'],
  'upstream-imds': ['upstreamImds', 'http://127.0.0.1:1', 'http://127.0.0.1:1'],
  'not-ready-wait': ['notReadyWaitMs', '2s', 2000],
  'read-through-timeout': ['readThroughTimeoutMs', '750ms', 750],
  'verify-wait': ['verifyWaitMs', '2s', 2000],
  'verify-reads-per-source': ['verifyReadsPerSource', '7', 7],
  'verify-reads-total': ['verifyReadsTotal', '70', 70],
  'verify-read-window': ['verifyReadWindowMs', '2s', 2000],
  'max-connections': ['maxConnections', '10', 10],
  'max-connections-per-source': ['maxConnectionsPerSource', '3', 3],
  'max-stranger-connections': ['maxStrangerConnections', '4', 4],
  'headers-timeout': ['headersTimeoutMs', '3s', 3000],
  'request-timeout': ['requestTimeoutMs', '20s', 20_000],
  'keep-alive-timeout': ['keepAliveTimeoutMs', '6s', 6000],
  'max-resources-per-identity': ['maxResourcesPerIdentity', '5', 5],
  'max-exchanges-per-identity': ['maxExchangesPerIdentity', '6', 6],
  'issuance-window': ['issuanceWindowMs', '1m', 60_000],
  'upstream-timeout': ['upstreamTimeoutMs', '5s', 5000],
  'cache-max-entries': ['cacheMaxEntries', '9', 9],
  'cache-safety-margin': ['cacheSafetyMarginSeconds', '2m', 120],
  'cache-refresh-ahead': ['cacheRefreshAheadSeconds', '3m', 180],
  'bypass-min-interval': ['bypassMinIntervalMs', '1s', 1000],
  'iptables-mode': ['iptablesMode', 'nft', 'nft'],
  'iptables-binary': ['iptablesBinary', 'iptables-legacy', 'iptables-legacy'],
  'intercept-host-network': ['interceptHostNetwork', 'true', true],
  'exclude-uid': ['excludeUid', '1000', 1000],
  'exclude-gid': ['excludeGid', '1001', 1001],
  'drift-check-interval': ['driftCheckIntervalMs', '10s', 10_000],
  'metadata-proxy': ['metadataProxy', 'false', false],
  'manage-iptables': ['manageIptables', 'false', false],
  'exceptions-configmap': ['exceptionsConfigMap', 'ns/cm', { namespace: 'ns', name: 'cm' }],
  'log-level': ['logLevel', 'debug', 'debug'],
  kubeconfig: ['kubeconfig', '/tmp/kubeconfig', '/tmp/kubeconfig'],
};

/** The variables the agent read before POD_IDENTITY_*, and a value in their old form with what it means. */
const OLD_VARIABLES: Record<string, [old: string, value: string, expected: unknown]> = {
  'not-ready-wait': ['NOT_READY_WAIT_MS', '2000', 2000],
  'read-through-timeout': ['READ_THROUGH_TIMEOUT_MS', '750', 750],
  'upstream-timeout': ['UPSTREAM_TIMEOUT_MS', '5000', 5000],
  'cache-safety-margin': ['CACHE_SAFETY_MARGIN_SECONDS', '120', 120],
  'cache-refresh-ahead': ['CACHE_REFRESH_AHEAD_SECONDS', '180', 180],
  'bypass-min-interval': ['BYPASS_MIN_INTERVAL_MS', '1000', 1000],
  'drift-check-interval': ['DRIFT_CHECK_INTERVAL_MS', '10000', 10_000],
};

describe('one convention: every flag, its POD_IDENTITY_ variable, and the old variable for one release', () => {
  // --intercept-host-network needs an exemption; the addresses must not collide with the defaults' ports.
  const needs = (flag: string): string[] => (flag === 'intercept-host-network' ? ['--exclude-uid=0'] : []);
  const required = (flag: string): string[] => base.filter((a) => !a.startsWith(`--${flag}=`));
  const field = (c: object, name: string): unknown => (c as Record<string, unknown>)[name];

  test('the table covers every flag', () => {
    assert.deepEqual(Object.keys(EVERY_FLAG).sort(), Object.keys(FLAGS).sort());
  });
  for (const [flag, [name, value, expected]] of Object.entries(EVERY_FLAG)) {
    const spec = FLAGS[flag]!;
    const env = spec.env ?? `POD_IDENTITY_${flag.toUpperCase().replace(/-/g, '_')}`;
    test(`--${flag} and ${env}`, () => {
      assert.deepEqual(field(loadConfig([...required(flag), `--${flag}=${value}`, ...needs(flag)], {}), name), expected);
      const fromEnv = loadConfig([...required(flag), ...needs(flag)], { [env]: value });
      assert.deepEqual(field(fromEnv, name), expected);
      assert.deepEqual(fromEnv.deprecations, []);
      if (!spec.deprecatedEnv) return;
      const [old, oldValue, oldExpected] = OLD_VARIABLES[flag] ?? [spec.deprecatedEnv, value, expected];
      assert.equal(old, spec.deprecatedEnv);
      const fromOld = loadConfig([...required(flag), ...needs(flag)], { [old]: oldValue });
      assert.deepEqual(field(fromOld, name), oldExpected, `${old}=${oldValue} keeps its meaning`);
      assert.equal(fromOld.deprecations.length, 1, 'one warning');
      assert.equal(fromOld.deprecations[0]!.setting, flag);
      assert.match(fromOld.deprecations[0]!.old, new RegExp(`^${old}`));
      assert.match(fromOld.deprecations[0]!.new, new RegExp(`^${env}`));
      const both = loadConfig([...required(flag), ...needs(flag)], { [old]: oldValue, [env]: value });
      assert.deepEqual(field(both, name), expected, 'the new name wins');
      assert.equal(both.deprecations[0]?.ignored, true);
    });
  }

  test('durations under their flags as bare numbers keep their old unit, with one warning each', () => {
    const c = loadConfig([...base, '--not-ready-wait=1000', '--drift-check-interval=500', '--cache-safety-margin=300', '--cache-refresh-ahead=3300'], {});
    assert.deepEqual([c.notReadyWaitMs, c.driftCheckIntervalMs, c.cacheSafetyMarginSeconds, c.cacheRefreshAheadSeconds], [1000, 500, 300, 3300]);
    assert.deepEqual(c.deprecations.map((d) => `${d.old} -> ${d.new}`), [
      '--not-ready-wait=1000 -> --not-ready-wait=1s',
      '--cache-safety-margin=300 -> --cache-safety-margin=5m',
      '--cache-refresh-ahead=3300 -> --cache-refresh-ahead=55m',
      '--drift-check-interval=500 -> --drift-check-interval=500ms',
    ]);
    fails([...base, '--verify-wait=5'], 'verify-wait', {});
    fails([...base, '--cache-safety-margin=1500ms'], 'cache-safety-margin');
  });

  test('a bad value names the flag, the variable it came from and the value', () => {
    assert.throws(() => loadConfig(base, { LISTEN_PORT: 'abc' }), { message: '--listen-port (from LISTEN_PORT): must be a whole number, got "abc"' });
    assert.throws(() => loadConfig(base, { POD_IDENTITY_NOT_READY_WAIT: 'soon' }), { message: '--not-ready-wait (from POD_IDENTITY_NOT_READY_WAIT): must be a duration such as 500ms, 15s or 10m, got "soon"' });
  });

  test('the manifests set NODE_NAME and NODE_IP for $(NODE_NAME) and pass the flags: nothing is deprecated', () => {
    assert.deepEqual(loadConfig(base, { NODE_NAME: 'node-1', NODE_IP: '10.0.0.4' }).deprecations, []);
  });

  test('agent uninstall reads the iptables settings by the same names', () => {
    assert.deepEqual(loadUninstallConfig([], { IPTABLES_MODE: 'legacy' }).iptablesMode, 'legacy');
    assert.deepEqual(loadUninstallConfig(['--iptables-mode=nft'], {}).deprecations, []);
    assert.throws(() => loadUninstallConfig(['--iptables-mode=pf'], {}), ConfigError);
  });
});
