import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PodIdentity } from '../../lib/api/types.js';
import { selectIdentity } from './select.js';

function pid(name: string, status?: { clientId: string; principalId?: string; resourceId?: string; ready?: boolean; mode?: 'Node' | 'Federated' }, specMode?: 'Node'): PodIdentity {
  return {
    apiVersion: 'podidentity.dev/v1alpha1',
    kind: 'PodIdentity',
    metadata: { name, namespace: 'ns' },
    spec: { identity: { managed: {} }, ...(specMode ? { mode: specMode } : {}) },
    status: status && {
      clientId: status.clientId,
      principalId: status.principalId ?? `${status.clientId}-oid`,
      resourceId: status.resourceId ?? `/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`,
      tenantId: 't',
      mode: status.mode,
      conditions: [{ type: 'Ready', status: status.ready === false ? 'False' : 'True', reason: 'x', message: '', lastTransitionTime: '' }],
    },
  };
}

describe('identity selection', () => {
  test('the single match, with mode from status, then spec, then the default', () => {
    const sel = selectIdentity([pid('a', { clientId: 'A', mode: 'Node' })], { kind: 'none' }, 'Federated');
    assert.equal(sel.kind, 'selected');
    assert.equal(sel.kind === 'selected' && sel.identity.mode, 'Node');
    const spec = selectIdentity([pid('a', { clientId: 'A' }, 'Node')], { kind: 'none' }, 'Federated');
    assert.equal(spec.kind === 'selected' && spec.identity.mode, 'Node');
    const dflt = selectIdentity([pid('a', { clientId: 'A' })], { kind: 'none' }, 'Federated');
    assert.equal(dflt.kind === 'selected' && dflt.identity.clientId, 'a', 'client ids are lower-cased');
  });
  test('none', () => assert.equal(selectIdentity([], { kind: 'none' }, 'Federated').kind, 'none'));
  test('several and no hint → multiple', () => {
    assert.equal(selectIdentity([pid('a', { clientId: 'A' }), pid('b', { clientId: 'B' })], { kind: 'none' }, 'Federated').kind, 'multiple');
  });
  test('by client_id, object_id, msi_res_id (case-insensitive)', () => {
    const both = [pid('a', { clientId: 'aaaa' }), pid('b', { clientId: 'bbbb', principalId: 'OB', resourceId: '/RES/b' })];
    const by = (hint: Parameters<typeof selectIdentity>[1]) => {
      const s = selectIdentity(both, hint, 'Federated');
      return s.kind === 'selected' ? s.identity.name : s.kind;
    };
    assert.equal(by({ kind: 'client_id', value: 'BBBB' }), 'b');
    assert.equal(by({ kind: 'object_id', value: 'ob' }), 'b');
    assert.equal(by({ kind: 'msi_res_id', value: '/res/B', param: 'mi_res_id' }), 'b');
    assert.equal(by({ kind: 'client_id', value: 'cccc' }), 'none');
  });
  test('a hint that names an identity not selecting the pod is not found, even if it exists elsewhere', () => {
    assert.equal(selectIdentity([pid('a', { clientId: 'A' })], { kind: 'client_id', value: 'other' }, 'Federated').kind, 'none');
  });
  test('not Ready, or no status yet → not_ready (worth waiting)', () => {
    assert.equal(selectIdentity([pid('a', { clientId: 'A', ready: false })], { kind: 'none' }, 'Federated').kind, 'not_ready');
    assert.equal(selectIdentity([pid('a')], { kind: 'none' }, 'Federated').kind, 'not_ready');
    // A hint that matches nothing Ready while another is still pending: it may be the pending one.
    assert.equal(selectIdentity([pid('a', { clientId: 'A' }), pid('b')], { kind: 'client_id', value: 'B' }, 'Federated').kind, 'not_ready');
  });
});
