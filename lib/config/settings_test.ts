import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from './errors.js';
import { envName, parseFlags, usageLines, type FlagSpecs } from './flags.js';
import { Settings } from './settings.js';

const SPECS: FlagSpecs = {
  port: { default: '80', help: 'a port' },
  wait: { deprecatedEnv: 'WAIT_MS', bareNumberUnit: 'ms', default: '3s', help: 'a wait' },
  margin: { bareNumberUnit: 's', default: '5m', help: 'seconds before' },
  debug: { boolean: true, default: 'false', help: 'a switch' },
  name: { deprecatedEnv: 'NAME', help: 'a name' },
  kubeconfig: { env: 'KUBECONFIG', help: 'a path' },
  secretless: { env: null, help: 'no variable' },
  guard: { deprecatedEnv: 'GUARD', boolean: true, default: 'true', help: 'a protection' },
};

const settings = (argv: string[], env: NodeJS.ProcessEnv = {}) => Settings.fromArgv(SPECS, argv, env);

function configError(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.message === message);
}

describe('flags', () => {
  test('--flag=value, --flag value, a boolean alone, and the last of a repeated flag', () => {
    assert.deepEqual([...parseFlags(['--port=1', '--name', 'n', '--debug', '--port', '2'], SPECS)], [['port', '2'], ['name', 'n'], ['debug', 'true']]);
    assert.deepEqual([...parseFlags(['--debug', 'false'], SPECS)], [['debug', 'false']]);
    assert.deepEqual([...parseFlags(['--debug=false', '--port='], SPECS)], [['debug', 'false'], ['port', '']]);
  });
  test('an unknown flag, a positional, a short flag or a missing value is an error naming it', () => {
    configError(() => parseFlags(['--bogus=1'], SPECS), '--bogus: unknown flag');
    configError(() => parseFlags(['stray'], SPECS), '--stray: unexpected argument');
    configError(() => parseFlags(['-p', '1'], SPECS), '--p: unknown flag');
    configError(() => parseFlags(['--port'], SPECS), '--port: needs a value');
  });
  test('variables are POD_IDENTITY_<FLAG> unless the spec names another or none', () => {
    assert.equal(envName('port', SPECS['port']!), 'POD_IDENTITY_PORT');
    assert.equal(envName('kubeconfig', SPECS['kubeconfig']!), 'KUBECONFIG');
    assert.equal(envName('secretless', SPECS['secretless']!), undefined);
    assert.match(usageLines(SPECS).join('\n'), /--wait +a wait \(env POD_IDENTITY_WAIT, default 3s\)/);
  });
});

describe('settings', () => {
  test('flag, then the variable, then the deprecated variable, then the default', () => {
    assert.equal(settings(['--port=1'], { POD_IDENTITY_PORT: '2' }).int('port', 0, 9), 1);
    assert.equal(settings([], { POD_IDENTITY_PORT: '2' }).int('port', 0, 9), 2);
    assert.equal(settings([], {}).raw('port'), '80');
    assert.equal(settings(['--port='], { POD_IDENTITY_PORT: '' }).raw('port'), '80', 'empty means not given');
    assert.equal(settings([], { NAME: 'old' }).raw('name'), 'old');
    assert.equal(settings([], { NAME: 'same', POD_IDENTITY_NAME: 'same' }).raw('name'), 'same');
  });

  test('deprecated variables: one entry each however often read; ignored when the new name is set; silent under a flag', () => {
    const s = settings([], { NAME: 'old' });
    s.raw('name');
    s.raw('name');
    s.required('name');
    assert.deepEqual(s.deprecations, [{ setting: 'name', old: 'NAME', new: 'POD_IDENTITY_NAME' }]);
    const both = settings([], { NAME: 'same', POD_IDENTITY_NAME: 'same' });
    both.raw('name');
    assert.deepEqual(both.deprecations, [{ setting: 'name', old: 'NAME', new: 'POD_IDENTITY_NAME', ignored: true }]);
    const flagged = settings(['--name=n'], { NAME: 'n' });
    flagged.raw('name');
    assert.deepEqual(flagged.deprecations, []);
  });

  test('durations: 15s-style; bare numbers keep their old unit under every name, with one warning naming both spellings', () => {
    assert.equal(settings([]).duration('wait', 0, 60_000), 3000);
    assert.equal(settings(['--wait=250ms']).duration('wait', 0, 60_000), 250);
    const bare = settings(['--wait=1500', '--margin=300']);
    assert.equal(bare.duration('wait', 0, 60_000), 1500);
    assert.equal(bare.duration('margin', 0, 3_600_000), 300_000);
    assert.deepEqual(bare.deprecations, [
      { setting: 'wait', old: '--wait=1500', new: '--wait=1.5s' },
      { setting: 'margin', old: '--margin=300', new: '--margin=5m' },
    ]);
    const oldEnv = settings([], { WAIT_MS: '2000' });
    assert.equal(oldEnv.duration('wait', 0, 60_000), 2000);
    assert.deepEqual(oldEnv.deprecations, [{ setting: 'wait', old: 'WAIT_MS=2000', new: 'POD_IDENTITY_WAIT=2s' }]);
    configError(() => settings(['--port=5']).duration('port', 0, 60_000), '--port: must be a duration such as 500ms, 15s or 10m, got "5"');
  });

  test('bad values name the flag, the variable they came from, and the value', () => {
    configError(() => settings([], { POD_IDENTITY_PORT: 'x' }).int('port', 0, 9), '--port (from POD_IDENTITY_PORT): must be a whole number, got "x"');
    configError(() => settings(['--port=10']).int('port', 0, 9), '--port: must be between 0 and 9, got 10');
    configError(() => settings([], { WAIT_MS: 'soon' }).duration('wait', 0, 60_000), '--wait (from WAIT_MS): must be a duration such as 500ms, 15s or 10m, got "soon"');
    configError(() => settings(['--wait=2m']).duration('wait', 0, 60_000), '--wait: must be between 0ms and 1m, got "2m"');
    configError(() => settings(['--debug=maybe']).bool('debug'), '--debug: must be true or false, got "maybe"');
    configError(() => settings([]).required('name'), '--name: required (or env POD_IDENTITY_NAME)');
    configError(() => settings(['--name=x']).oneOf('name', ['a', 'b']), '--name: must be one of a, b, got "x"');
    configError(() => settings(['--name=ftp://x']).url('name', ['https:']), '--name: must use https:, got "ftp://x"');
    configError(() => settings(['--name=::1']).ipv4('name'), '--name: must be an IPv4 address, got "::1"');
  });

  test('deprecated-name downgrade: an old variable that means something else than its replacement is refused, naming both', () => {
    const refused = (argv: string[], env: NodeJS.ProcessEnv, read: (s: Settings) => unknown, old: string, winner: string) =>
      assert.throws(
        () => read(settings(argv, env)),
        (err: unknown) => err instanceof ConfigError && err.message.includes(old) && err.message.includes(winner),
      );
    refused([], { GUARD: 'true', POD_IDENTITY_GUARD: 'false' }, (s) => s.bool('guard'), 'GUARD', 'POD_IDENTITY_GUARD');
    refused(['--guard=false'], { GUARD: 'true' }, (s) => s.bool('guard'), 'GUARD', '--guard');
    refused([], { WAIT_MS: '60000', POD_IDENTITY_WAIT: '1s' }, (s) => s.duration('wait', 0, 120_000), 'WAIT_MS', 'POD_IDENTITY_WAIT');
    refused(['--name=b'], { NAME: 'a' }, (s) => s.raw('name'), 'NAME', '--name');
  });

  test('an old variable that means the same as its replacement, however spelled, is accepted', () => {
    const migrating = settings([], { WAIT_MS: '2000', POD_IDENTITY_WAIT: '2s', GUARD: '1', POD_IDENTITY_GUARD: 'true' });
    assert.equal(migrating.duration('wait', 0, 60_000), 2000);
    assert.equal(migrating.bool('guard'), true);
    assert.deepEqual(
      migrating.deprecations.map((d) => [d.old, d.ignored]),
      [
        ['WAIT_MS', true],
        ['GUARD', true],
      ],
    );
    assert.equal(settings(['--name=n'], { NAME: 'n' }).raw('name'), 'n');
  });
});
