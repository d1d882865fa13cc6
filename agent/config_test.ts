import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

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
    const c = loadConfig(['--listen-port', '9000', '--metadata-proxy=false'], { NODE_NAME: 'n', NODE_IP: '10.1.1.1', LISTEN_PORT: '1', DEFAULT_MODE: 'Node' });
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
