import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

const SUB = '00000000-0000-4000-8000-000000000001';
const base = ['--subscription-id', SUB, '--resource-group', 'pods', '--location', 'eastus', '--oidc-issuer', 'https://issuer.example/'];

function fails(argv: string[], flag: string, env: NodeJS.ProcessEnv = {}): void {
  assert.throws(() => loadConfig(argv, env), (err: unknown) => err instanceof ConfigError && err.flag === flag && err.message.startsWith(`--${flag}:`));
}

describe('operator config', () => {
  it('applies defaults', () => {
    const c = loadConfig(base, {});
    assert.equal(c.defaultMode, 'Federated');
    assert.equal(c.oidcIssuer, 'https://issuer.example');
    assert.equal(c.workers, 4);
    assert.equal(c.leaderElect, false);
    assert.equal(c.leaderElectionName, 'podidentity-operator');
    assert.equal(c.metricsPort, 8080);
    assert.equal(c.armEndpoint, 'https://management.azure.com');
    assert.equal(c.batchWindowMs, 2000);
    assert.equal(c.clientSecret, undefined);
  });

  it('reads flags, with env as a fallback, and --leader-elect alone means true', () => {
    const c = loadConfig(
      ['--resource-group', 'rg', '--location', 'westeurope', '--default-mode', 'Node', '--workers', '8', '--leader-elect', '--batch-window', '500ms', '--metrics-port', '0'],
      { AZURE_SUBSCRIPTION_ID: SUB, POD_NAMESPACE: 'ops', AZURE_CLIENT_SECRET: 's3cret', AZURE_TENANT_ID: SUB, AZURE_CLIENT_ID: 'abc' },
    );
    assert.equal(c.subscriptionId, SUB);
    assert.equal(c.defaultMode, 'Node');
    assert.equal(c.workers, 8);
    assert.equal(c.leaderElect, true);
    assert.equal(c.leaderElectionNamespace, 'ops');
    assert.equal(c.batchWindowMs, 500);
    assert.equal(c.metricsPort, 0);
    assert.equal(c.clientSecret, 's3cret');
    assert.equal(loadConfig([...base, '--leader-elect=false'], {}).leaderElect, false);
  });

  it('names the offending flag', () => {
    fails(base.slice(2), 'subscription-id');
    fails(['--subscription-id', 'nope', ...base.slice(2)], 'subscription-id');
    fails(base.filter((a, i) => i !== 2 && i !== 3), 'resource-group');
    fails([...base.slice(0, 4), '--oidc-issuer', 'https://x'], 'location');
    fails([...base, '--default-mode', 'Pod'], 'default-mode');
    fails([...base.slice(0, 6)], 'oidc-issuer');
    fails([...base.slice(0, 6), '--oidc-issuer', 'http://insecure'], 'oidc-issuer');
    fails([...base.slice(0, 6), '--aks-cluster-id', '/subscriptions/x/resourceGroups/y'], 'aks-cluster-id');
    fails([...base, '--workers', '0'], 'workers');
    fails([...base, '--workers', 'many'], 'workers');
    fails([...base, '--metrics-port', '70000'], 'metrics-port');
    fails([...base, '--log-level', 'loud'], 'log-level');
    fails([...base, '--batch-window', 'soon'], 'batch-window');
    fails([...base, '--arm-endpoint', 'http://arm'], 'arm-endpoint');
    fails([...base, '--leader-elect=maybe'], 'leader-elect');
    fails([...base, '--no-such-flag'], 'no-such-flag');
  });

  it('accepts an AKS cluster id instead of an issuer, and Node mode without either', () => {
    const aks = `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks`;
    assert.equal(loadConfig([...base.slice(0, 6), '--aks-cluster-id', aks], {}).aksClusterId, aks);
    assert.equal(loadConfig([...base.slice(0, 6), '--default-mode', 'Node'], {}).oidcIssuer, undefined);
  });

  it('kubenet is refused unless --allow-network-plugin-kubenet (alone, =true, or env); the cluster id must be canonical', () => {
    const aks = `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks`;
    assert.equal(loadConfig(base, {}).allowNetworkPluginKubenet, false);
    assert.equal(loadConfig([...base, '--allow-network-plugin-kubenet'], {}).allowNetworkPluginKubenet, true);
    assert.equal(loadConfig([...base, '--allow-network-plugin-kubenet=false'], {}).allowNetworkPluginKubenet, false);
    assert.equal(loadConfig(base, { POD_IDENTITY_ALLOW_NETWORK_PLUGIN_KUBENET: 'true' }).allowNetworkPluginKubenet, true);
    fails([...base, '--allow-network-plugin-kubenet=perhaps'], 'allow-network-plugin-kubenet');
    // With both, the issuer flag gives the issuer and the cluster is still read for its network plugin.
    const both = loadConfig([...base, '--aks-cluster-id', aks], {});
    assert.equal(both.oidcIssuer, 'https://issuer.example');
    assert.equal(both.aksClusterId, aks);
    fails([...base.slice(0, 6), '--aks-cluster-id', `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/../../x`], 'aks-cluster-id');
  });

  it('durations are 15s-style; a bare number still means milliseconds for one release, with a warning', () => {
    const c = loadConfig([...base, '--batch-window', '1m', '--lease-duration=30s'], {});
    assert.equal(c.batchWindowMs, 60_000);
    assert.equal(c.leaseDurationMs, 30_000);
    assert.deepEqual(c.deprecations, []);
    const old = loadConfig([...base, '--batch-window', '250'], { POD_IDENTITY_LEASE_DURATION: '20000' });
    assert.equal(old.batchWindowMs, 250);
    assert.equal(old.leaseDurationMs, 20_000);
    assert.deepEqual(old.deprecations, [
      { setting: 'lease-duration', old: 'POD_IDENTITY_LEASE_DURATION=20000', new: 'POD_IDENTITY_LEASE_DURATION=20s' },
      { setting: 'batch-window', old: '--batch-window=250', new: '--batch-window=250ms' },
    ]);
    fails([...base, '--lease-duration', '1s'], 'lease-duration');
  });

  it('env variables follow POD_IDENTITY_<FLAG>; LOG_LEVEL and POD_NAMESPACE still work for one release, with a warning', () => {
    const c = loadConfig(base, { POD_IDENTITY_LOG_LEVEL: 'debug', POD_IDENTITY_LEADER_ELECTION_NAMESPACE: 'ops', POD_IDENTITY_WORKERS: '2' });
    assert.deepEqual([c.logLevel, c.leaderElectionNamespace, c.workers, c.deprecations], ['debug', 'ops', 2, []]);
    const old = loadConfig(base, { LOG_LEVEL: 'warn', POD_NAMESPACE: 'legacy' });
    assert.deepEqual([old.logLevel, old.leaderElectionNamespace], ['warn', 'legacy']);
    assert.deepEqual(old.deprecations.map((d) => [d.old, d.new]), [['POD_NAMESPACE', 'POD_IDENTITY_LEADER_ELECTION_NAMESPACE'], ['LOG_LEVEL', 'POD_IDENTITY_LOG_LEVEL']]);
    // The manifests set POD_NAMESPACE for $(POD_NAMESPACE) and pass the flag: nothing to warn about.
    assert.deepEqual(loadConfig([...base, '--leader-election-namespace=ops'], { POD_NAMESPACE: 'ops' }).deprecations, []);
  });

  it('a bad value from the environment names the variable and the value', () => {
    assert.throws(() => loadConfig(base, { POD_IDENTITY_WORKERS: 'many' }), (err: unknown) => err instanceof ConfigError && err.flag === 'workers' && err.message === '--workers (from POD_IDENTITY_WORKERS): must be a whole number, got "many"');
  });
});
