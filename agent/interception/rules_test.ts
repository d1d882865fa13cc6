import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { desiredChains, findDrift, ourRules, parseSave, renderRemoval, renderRestore, type InterceptionSpec } from './rules.js';

const spec: InterceptionSpec = { agentIp: '10.1.0.1', agentPort: 8775, interceptHostNetwork: false };

/** What iptables-save prints after `renderRestore` was applied (nft and legacy print the same). */
function savedAfterApply(s: InterceptionSpec, extra: { nat?: string[]; filter?: string[] } = {}): string {
  const chains = desiredChains(s);
  const table = (name: 'nat' | 'filter', builtins: string[]) => {
    const mine = chains.filter((c) => c.table === name);
    return [
      `*${name}`,
      ...builtins.map((b) => `:${b} ACCEPT [0:0]`),
      ...mine.map((c) => `:${c.chain} - [0:0]`),
      ...mine.map((c) => `-A ${c.from} -j ${c.chain}`),
      ...(extra[name] ?? []),
      ...mine.flatMap((c) => c.rules),
      'COMMIT',
    ];
  };
  return [...table('filter', ['INPUT', 'FORWARD', 'OUTPUT']), ...table('nat', ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'])].join('\n') + '\n';
}

describe('rule rendering', () => {
  test('DNAT of IMDS to the agent and a REJECT fallback, in iptables-save form', () => {
    const restore = renderRestore(spec, parseSave(''));
    assert.equal(
      restore,
      [
        '*nat',
        ':PODID-IMDS - [0:0]',
        '-I PREROUTING 1 -j PODID-IMDS',
        '-A PODID-IMDS -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:8775',
        'COMMIT',
        '*filter',
        ':PODID-IMDS-FALLBACK - [0:0]',
        '-I FORWARD 1 -j PODID-IMDS-FALLBACK',
        '-A PODID-IMDS-FALLBACK -p tcp -m conntrack --ctorigdst 169.254.169.254 -j REJECT --reject-with tcp-reset',
        '-A PODID-IMDS-FALLBACK -m conntrack --ctorigdst 169.254.169.254 -j REJECT --reject-with icmp-port-unreachable',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  test('hostNetwork opt-in adds OUTPUT chains that exempt the agent by owner first', () => {
    const chains = desiredChains({ ...spec, interceptHostNetwork: true, excludeGid: 4242 });
    const natOut = chains.find((c) => c.chain === 'PODID-IMDS-OUTPUT');
    assert.equal(natOut?.from, 'OUTPUT');
    assert.deepEqual(natOut?.rules, [
      '-A PODID-IMDS-OUTPUT -m owner --gid-owner 4242 -j RETURN',
      '-A PODID-IMDS-OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:8775',
    ]);
    assert.equal(chains.find((c) => c.chain === 'PODID-IMDS-OUTPUT-FALLBACK')?.rules[0], '-A PODID-IMDS-OUTPUT-FALLBACK -m owner --gid-owner 4242 -j RETURN');
  });

  test('in sync: no drift; re-applying leaves exactly one jump', () => {
    const state = parseSave(savedAfterApply(spec));
    assert.deepEqual(findDrift(spec, state), []);
    const again = renderRestore(spec, state);
    // The existing jump is deleted and one inserted, in the same atomic commit.
    assert.match(again, /-D PREROUTING -j PODID-IMDS\n-I PREROUTING 1 -j PODID-IMDS/);
    assert.equal(again.match(/-I PREROUTING/g)?.length, 1);
  });

  test('drift: duplicate jumps, a jump not first, a changed rule, a missing chain', () => {
    const dup = parseSave(savedAfterApply(spec, { nat: ['-A PREROUTING -j PODID-IMDS'] }));
    assert.match(findDrift(spec, dup).join(), /2 jumps to PODID-IMDS/);
    assert.equal(renderRestore(spec, dup).match(/-D PREROUTING -j PODID-IMDS/g)?.length, 2);

    const notFirst = parseSave(savedAfterApply(spec).replace('-A PREROUTING -j PODID-IMDS', '-A PREROUTING -j KUBE-SERVICES\n-A PREROUTING -j PODID-IMDS'));
    assert.match(findDrift(spec, notFirst).join(), /not the first rule/);

    const otherPort = parseSave(savedAfterApply({ ...spec, agentPort: 9999 }));
    assert.match(findDrift(spec, otherPort).join(), /PODID-IMDS: rules differ/);

    const noFilter = parseSave(savedAfterApply(spec).replace(/\*filter[\s\S]*?COMMIT\n/, ''));
    assert.match(findDrift(spec, noFilter).join(), /filter\/PODID-IMDS-FALLBACK: chain missing/);
  });

  test('turning the hostNetwork opt-in off removes its chains and jumps', () => {
    const withOutput = { ...spec, interceptHostNetwork: true, excludeUid: 0 };
    const state = parseSave(savedAfterApply(withOutput));
    assert.match(findDrift(spec, state).join(), /PODID-IMDS-OUTPUT: chain should not exist/);
    const restore = renderRestore(spec, state);
    assert.match(restore, /-D OUTPUT -j PODID-IMDS-OUTPUT\n-X PODID-IMDS-OUTPUT/);
    assert.match(restore, /-D OUTPUT -j PODID-IMDS-OUTPUT-FALLBACK\n-X PODID-IMDS-OUTPUT-FALLBACK/);
  });

  test('removal deletes jumps then chains, and nothing when there is nothing', () => {
    const removal = renderRemoval(parseSave(savedAfterApply(spec)));
    assert.equal(
      removal,
      ['*nat', ':PODID-IMDS - [0:0]', '-D PREROUTING -j PODID-IMDS', '-X PODID-IMDS', 'COMMIT', '*filter', ':PODID-IMDS-FALLBACK - [0:0]', '-D FORWARD -j PODID-IMDS-FALLBACK', '-X PODID-IMDS-FALLBACK', 'COMMIT', ''].join('\n'),
    );
    assert.equal(renderRemoval(parseSave('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n')), '');
  });

  test('ourRules picks only our chains and jumps', () => {
    const rules = ourRules(parseSave(savedAfterApply(spec, { nat: ['-A PREROUTING -j KUBE-SERVICES'] })));
    assert.ok(rules.every((r) => r.includes('PODID-')));
    assert.equal(rules.length, 5);
  });
});
