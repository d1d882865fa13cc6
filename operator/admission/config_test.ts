import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../config.js';

const base = ['--subscription-id', '00000000-0000-4000-8000-000000000001', '--resource-group', 'pods', '--location', 'eastus', '--oidc-issuer', 'https://issuer.example/'];

test('the agent-token webhook is off unless --webhook-port is set, and then defaults to the shipped names', () => {
  assert.equal(loadConfig(base, {}).webhook, undefined);
  assert.deepEqual(loadConfig([...base, '--webhook-port', '9443'], { POD_NAMESPACE: 'ops' }).webhook, {
    port: 9443,
    configurationName: 'podidentity-agent-token-requests',
    service: 'podidentity-webhook',
    extraHosts: [],
    agentServiceAccount: { namespace: 'ops', serviceAccount: 'podidentity-agent' },
  });
});

test('a malformed --agent-service-account or --webhook-port is refused naming the flag', () => {
  const fails = (argv: string[], flag: string) => assert.throws(() => loadConfig([...base, ...argv], {}), (err: unknown) => err instanceof ConfigError && err.flag === flag);
  fails(['--webhook-port', '9443', '--agent-service-account', 'podidentity-agent'], 'agent-service-account');
  fails(['--webhook-port', '9443', '--agent-service-account', 'a:b:c'], 'agent-service-account');
  fails(['--webhook-port', '0'], 'webhook-port');
});

test('--webhook-hosts adds names to the certificate (a webhook reached by URL)', () => {
  assert.deepEqual(loadConfig([...base, '--webhook-port', '9443', '--webhook-hosts', '127.0.0.1, webhook.example'], {}).webhook?.extraHosts, ['127.0.0.1', 'webhook.example']);
});
