/**
 * What `kubectl kustomize` renders for config/default, the overlays and the components, checked for the
 * security and availability properties the product promises. No API server needed (see dryrun_e2e.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { EXCEPTIONS_KEY } from '../../agent/attribution/exceptions.js';
import { loadConfig as loadAgentConfig } from '../../agent/config.js';
import { loadConfig as loadOperatorConfig } from '../../operator/config.js';
import { EXCEPTIONS_CONFIGMAP as MIGRATED_EXCEPTIONS } from '../../operator/migrate/migrate.js';
import { agentMatchConditions, agentUsername, MAX_AGENT_TOKEN_SECONDS, WEBHOOK_PATH } from '../../operator/admission/index.js';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../lib/api/types.js';
import { crdFiles } from '../../dev/local-cluster/controlplane/crds.js';
import { find, kustomize, parseObjects, repoRoot, type K8sObject } from '../../dev/local-cluster/kubelet/render.js';

const NAMESPACE = 'podidentity-system';
const AGENT = 'podidentity-agent';
const OPERATOR = 'podidentity-operator';
const OPERATOR_NAMESPACED_ROLE = 'podidentity-operator-leader-election';
const AGENT_EXCEPTIONS_ROLE = 'podidentity-agent-imds-exceptions';
/** Where operator/migrate writes the IMDS exceptions: the agent's flag and Role must name the same ConfigMap. */
const EXCEPTIONS_CONFIGMAP = MIGRATED_EXCEPTIONS.name;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

function podSpec(o: K8sObject): Json {
  return o.spec.template.spec;
}

function container(o: K8sObject, name: string): Json {
  const c = (podSpec(o).containers as Json[]).find((x) => x.name === name);
  assert.ok(c, `${o.kind} ${o.metadata.name} has a container named ${name}`);
  return c;
}

function allContainers(o: K8sObject): Json[] {
  return [...(podSpec(o).initContainers ?? []), ...podSpec(o).containers];
}

function workloads(objects: K8sObject[]): K8sObject[] {
  return objects.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet', 'Job'].includes(o.kind));
}

/** The properties every deployable variant (default and its overlays) must keep. */
function checkSecurity(objects: K8sObject[], expect: { operatorReplicas: number }): void {
  // Agent DaemonSet.
  const agent = find(objects, 'DaemonSet', AGENT);
  const ps = podSpec(agent);
  assert.equal(ps.hostNetwork, true, 'agent runs in the host network namespace');
  // Configuration is read from POD_IDENTITY_* variables: a Service named pod-identity-metrics in the namespace
  // would otherwise inject POD_IDENTITY_METRICS_PORT=tcp://… and stop every agent and operator from starting.
  for (const w of workloads(objects).filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment')) {
    assert.equal(podSpec(w).enableServiceLinks, false, `${w.kind} ${w.metadata.name}: no Service environment variables`);
  }
  assert.equal(ps.dnsPolicy, 'ClusterFirstWithHostNet', 'hostNetwork pods need ClusterFirstWithHostNet to resolve cluster DNS');
  assert.ok((ps.tolerations as Json[]).some((t) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined), 'agent tolerates every taint');
  assert.ok(ps.priorityClassName, 'agent has a priority class');
  if (!String(ps.priorityClassName).startsWith('system-')) find(objects, 'PriorityClass', ps.priorityClassName);
  assert.deepEqual(agent.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  const a = container(agent, 'agent');
  assert.deepEqual(a.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] }, 'only NET_ADMIN is added');
  assert.notEqual(a.securityContext.privileged, true);
  assert.equal(a.securityContext.allowPrivilegeEscalation, false);
  assert.equal(a.securityContext.readOnlyRootFilesystem, true);
  assert.equal(a.lifecycle?.preStop, undefined, 'no preStop: rules must survive restarts and upgrades (fail closed)');
  const lockVolume = (ps.volumes as Json[]).find((v) => v.hostPath?.path === '/run/xtables.lock');
  assert.deepEqual(lockVolume?.hostPath, { path: '/run/xtables.lock', type: 'FileOrCreate' });
  assert.ok((a.volumeMounts as Json[]).some((m) => m.name === lockVolume.name && m.mountPath === '/run/xtables.lock' && !m.readOnly), 'xtables lock mounted read-write');
  const env = Object.fromEntries((a.env as Json[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
  assert.equal(env.NODE_NAME, 'spec.nodeName');
  assert.equal(env.NODE_IP, 'status.hostIP');
  assert.equal(a.args[0], 'run');
  assert.ok((a.args as string[]).includes('--node-name=$(NODE_NAME)') && (a.args as string[]).includes('--node-ip=$(NODE_IP)'));
  assert.equal(a.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(a.readinessProbe?.httpGet?.path, '/readyz');
  assert.ok(a.resources?.requests?.memory && a.resources?.limits?.memory, 'agent has memory requests and limits');

  // Operator Deployment.
  const op = find(objects, 'Deployment', OPERATOR);
  assert.equal(op.spec.replicas, expect.operatorReplicas);
  const o = container(op, 'operator');
  assert.ok((o.args as string[]).includes('--leader-elect'), 'leader election is on');
  assert.equal(o.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(o.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(podSpec(op).securityContext.runAsNonRoot, true);
  assert.equal(podSpec(op).securityContext.seccompProfile?.type, 'RuntimeDefault');
  assert.equal(o.securityContext.readOnlyRootFilesystem, true);
  assert.equal(o.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(o.securityContext.capabilities, { drop: ['ALL'] });
  assert.ok(o.resources?.requests?.cpu && o.resources?.requests?.memory && o.resources?.limits?.memory, 'operator has resources');
  const pdb = find(objects, 'PodDisruptionBudget', OPERATOR);
  assert.equal(pdb.apiVersion, 'policy/v1');
  assert.deepEqual(pdb.spec.selector, op.spec.selector, 'the PDB covers the operator pods');

  // No container anywhere is privileged or escalates.
  for (const w of workloads(objects)) {
    assert.notEqual(podSpec(w).hostPID, true, `${w.metadata.name}: no hostPID`);
    assert.notEqual(podSpec(w).hostIPC, true, `${w.metadata.name}: no hostIPC`);
    for (const c of allContainers(w)) {
      assert.notEqual(c.securityContext?.privileged, true, `${w.metadata.name}/${c.name} is not privileged`);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${w.metadata.name}/${c.name} can't escalate`);
      for (const cap of c.securityContext?.capabilities?.add ?? []) assert.equal(cap, 'NET_ADMIN', `${w.metadata.name}/${c.name} adds only NET_ADMIN`);
      assert.match(c.image, /^[^/]+\/.+:.+$|^[a-z-]+:dev$/, `${w.metadata.name}/${c.name} image is rewritten to a real reference: ${c.image}`);
    }
  }

  checkRbac(objects);
  checkServices(objects);
  for (const obj of objects) {
    if (obj.metadata.namespace !== undefined) assert.equal(obj.metadata.namespace, NAMESPACE, `${obj.kind} ${obj.metadata.name} is in ${NAMESPACE}`);
  }
}

function rulesOf(objects: K8sObject[], kind: 'ClusterRole' | 'Role', name: string): Json[] {
  return find(objects, kind, name).rules as Json[];
}

/** Flattens rules to "group/resource:verb" strings, so that splitting rules differently compares equal. */
function grants(rules: Json[]): string[] {
  return rules
    .flatMap((r) => (r.apiGroups as string[]).flatMap((g) => (r.resources as string[]).flatMap((res) => (r.verbs as string[]).map((v) => `${g || 'core'}/${res}:${v}`))))
    .sort();
}

function checkRbac(objects: K8sObject[]): void {
  const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
  assert.ok(roles.length >= 3);
  for (const role of roles) {
    for (const rule of role.rules as Json[]) {
      for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames'] as const) {
        assert.ok(!(rule[field] ?? []).includes('*'), `${role.kind} ${role.metadata.name}: no wildcard in ${field}`);
      }
      assert.equal(rule.nonResourceURLs, undefined, `${role.metadata.name}: no nonResourceURLs`);
      assert.ok(!(rule.resources as string[]).includes('secrets'), `${role.kind} ${role.metadata.name} has no access to Secrets`);
    }
  }
  assert.deepEqual(grants(rulesOf(objects, 'ClusterRole', AGENT)), [
    'core/events:create',
    'core/pods:get', 'core/pods:list', 'core/pods:watch',
    'core/serviceaccounts/token:create',
    'podidentity.dev/podidentities:get', 'podidentity.dev/podidentities:list', 'podidentity.dev/podidentities:watch',
  ].sort());
  const operatorGrants = grants(rulesOf(objects, 'ClusterRole', OPERATOR));
  for (const needed of ['podidentity.dev/podidentities:watch', 'podidentity.dev/podidentities:patch', 'podidentity.dev/podidentities/status:patch', 'podidentity.dev/podidentitypolicies:list', 'core/pods:watch', 'core/nodes:watch', 'core/events:create', 'core/events:watch']) {
    assert.ok(operatorGrants.includes(needed), `operator may ${needed}`);
  }
  for (const forbidden of ['podidentity.dev/podidentities:create', 'podidentity.dev/podidentities:delete', 'podidentity.dev/podidentitypolicies:update', 'core/pods:delete', 'core/serviceaccounts/token:create']) {
    assert.ok(!operatorGrants.includes(forbidden), `operator may not ${forbidden}`);
  }
  // Leases and ConfigMaps only in the operator's namespace, never cluster-wide.
  assert.ok(!operatorGrants.some((g) => g.startsWith('coordination.k8s.io/') || g.startsWith('core/configmaps')));
  const namespaced = objects.filter((o) => o.kind === 'Role');
  assert.deepEqual(namespaced.map((r) => r.metadata.name).sort(), [AGENT_EXCEPTIONS_ROLE, OPERATOR_NAMESPACED_ROLE]);
  for (const role of namespaced) assert.equal(role.metadata.namespace, NAMESPACE);
  assert.deepEqual(grants(rulesOf(objects, 'Role', OPERATOR_NAMESPACED_ROLE)), [
    'coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:update',
    'core/configmaps:create', 'core/configmaps:get', 'core/configmaps:patch',
  ]);
  // The agent reads one ConfigMap by name (its informer lists and watches with a metadata.name field
  // selector, which resourceNames authorises), and nothing else in the namespace.
  assert.deepEqual(rulesOf(objects, 'Role', AGENT_EXCEPTIONS_ROLE), [
    { apiGroups: [''], resources: ['configmaps'], resourceNames: [EXCEPTIONS_CONFIGMAP], verbs: ['get', 'list', 'watch'] },
  ]);

  // Every binding binds an existing role to an existing ServiceAccount; each SA gets only its own roles.
  const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding');
  for (const b of bindings) {
    find(objects, b.roleRef.kind, b.roleRef.name);
    for (const s of b.subjects as Json[]) {
      assert.equal(s.kind, 'ServiceAccount');
      assert.equal(s.namespace, NAMESPACE);
      find(objects, 'ServiceAccount', s.name);
    }
  }
  const agentRoles = bindings.filter((b) => (b.subjects as Json[]).some((s) => s.name === AGENT)).map((b) => `${b.roleRef.kind}/${b.roleRef.name}`);
  assert.deepEqual(agentRoles.sort(), [`ClusterRole/${AGENT}`, `Role/${AGENT_EXCEPTIONS_ROLE}`], 'the agent is bound to its own ClusterRole and exceptions Role only');
  assert.equal(podSpec(find(objects, 'DaemonSet', AGENT)).serviceAccountName, AGENT);
  assert.equal(podSpec(find(objects, 'Deployment', OPERATOR)).serviceAccountName, OPERATOR);
}

function checkServices(objects: K8sObject[]): void {
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const targets = workloads(objects).filter((w) => Object.entries(svc.spec.selector as Record<string, string>).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
    assert.equal(targets.length, 1, `Service ${svc.metadata.name} selects exactly one workload`);
    const target = targets[0] as K8sObject;
    for (const port of svc.spec.ports as Json[]) {
      const named = allContainers(target).flatMap((c) => (c.ports ?? []) as Json[]).find((p) => p.name === port.targetPort);
      assert.ok(named, `Service ${svc.metadata.name} targets the named port ${port.targetPort}`);
    }
  }
}

describe('config/default', async () => {
  const { objects } = await kustomize('config/default');

  test('composes CRDs, namespace, RBAC, operator, agent and metrics Services', () => {
    const kinds = objects.map((o) => o.kind).sort();
    assert.deepEqual(kinds, [
      'ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'CustomResourceDefinition', 'CustomResourceDefinition',
      'DaemonSet', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'PriorityClass', 'Role', 'Role', 'RoleBinding', 'RoleBinding',
      'Service', 'Service', 'Service', 'ServiceAccount', 'ServiceAccount', 'ValidatingWebhookConfiguration',
    ]);
    find(objects, 'Service', 'podidentity-operator-metrics');
    find(objects, 'Service', 'podidentity-agent-metrics');
    assert.equal(find(objects, 'Namespace', NAMESPACE).metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
  });

  test('has the security and availability settings', () => {
    checkSecurity(objects, { operatorReplicas: 2 });
  });

  test('the CRDs are crds/ exactly, and crds/kustomization.yaml lists every CRD file there', () => {
    const listed = crdFiles();
    const present = readdirSync(join(repoRoot, 'crds')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    assert.deepEqual([...listed].sort(), present.sort(), 'crds/kustomization.yaml resources are the CRD files in crds/');
    assert.equal(objects.filter((o) => o.kind === 'CustomResourceDefinition').length, listed.length);
    for (const file of listed) {
      const [source] = parseObjects(readFileSync(join(repoRoot, 'crds', file), 'utf8'));
      const rendered = find(objects, 'CustomResourceDefinition', source?.metadata.name ?? '');
      assert.deepEqual(rendered.spec, source?.spec);
    }
  });
});

describe('config/overlays/aks', async () => {
  const { objects } = await kustomize('config/overlays/aks');

  test('keeps every security setting', () => checkSecurity(objects, { operatorReplicas: 2 }));

  test("wires workload identity for the operator's own credential", () => {
    const sa = find(objects, 'ServiceAccount', OPERATOR);
    assert.equal(sa.metadata.annotations?.['azure.workload.identity/client-id'], '<OPERATOR_CLIENT_ID>');
    const op = find(objects, 'Deployment', OPERATOR);
    assert.equal(op.spec.template.metadata.labels['azure.workload.identity/use'], 'true');
    assert.equal(op.spec.selector.matchLabels['azure.workload.identity/use'], undefined, 'the selector (immutable) is unchanged');
    const args = container(op, 'operator').args as string[];
    for (const flag of ['--subscription-id=', '--resource-group=', '--location=', '--aks-cluster-id=']) {
      assert.ok(args.some((a) => a.startsWith(flag)), `operator gets ${flag}`);
    }
    // The agent never gets the operator's credential.
    assert.equal(find(objects, 'ServiceAccount', AGENT).metadata.annotations, undefined);
    assert.equal(find(objects, 'DaemonSet', AGENT).spec.template.metadata.labels['azure.workload.identity/use'], undefined);
  });
});

describe('config/overlays/dev', async () => {
  const { objects } = await kustomize('config/overlays/dev');

  test('one replica, debug logs, local images, and still secure', () => {
    checkSecurity(objects, { operatorReplicas: 1 });
    const op = find(objects, 'Deployment', OPERATOR);
    const agent = find(objects, 'DaemonSet', AGENT);
    assert.ok((container(op, 'operator').args as string[]).includes('--log-level=debug'));
    assert.ok((container(agent, 'agent').args as string[]).includes('--log-level=debug'));
    assert.equal(container(op, 'operator').image, 'podidentity-operator:dev');
    assert.equal(container(agent, 'agent').image, 'podidentity-agent:dev');
  });
});

describe('config/components/uninstall (via config/overlays/uninstall)', async () => {
  const { objects } = await kustomize('config/overlays/uninstall');
  const { objects: base } = await kustomize('config/default');

  test('runs `agent uninstall` once per node with the same image and only NET_ADMIN, then idles unprivileged', () => {
    const agent = find(objects, 'DaemonSet', AGENT);
    const init = podSpec(agent).initContainers as Json[];
    assert.equal(init.length, 1);
    const [uninstall] = init;
    assert.deepEqual(uninstall.args, ['uninstall']);
    assert.equal(uninstall.image, container(find(base, 'DaemonSet', AGENT), 'agent').image, 'the image the agent ran');
    assert.deepEqual(uninstall.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    assert.ok((uninstall.volumeMounts as Json[]).some((m) => m.mountPath === '/run/xtables.lock'));
    const idle = container(agent, 'agent');
    assert.deepEqual(idle.command, ['sleep', 'infinity']);
    assert.equal(idle.args, undefined);
    assert.equal(idle.readinessProbe, undefined);
    assert.deepEqual(idle.securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(idle.securityContext.runAsNonRoot, true);
    // Everything else is the deployed product, so `kubectl apply -k` only changes the DaemonSet.
    const others = (objs: K8sObject[]) => objs.filter((o) => o.kind !== 'DaemonSet');
    assert.deepEqual(others(objects), others(base));
  });
});

describe('config/components/prometheus (via config/overlays/monitoring)', async () => {
  const { objects } = await kustomize('config/overlays/monitoring');
  const { objects: base } = await kustomize('config/default');

  test('adds ServiceMonitors that select the metrics Services, the alerts and the dashboard, and changes nothing else', () => {
    const added = objects.filter((o) => !base.some((b) => b.kind === o.kind && b.metadata.name === o.metadata.name));
    assert.deepEqual(added.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
      'ConfigMap/podidentity-grafana-dashboard', 'PrometheusRule/podidentity', 'ServiceMonitor/podidentity-agent', 'ServiceMonitor/podidentity-operator',
    ]);
    assert.deepEqual(objects.filter((o) => !added.includes(o)), base);
    for (const sm of added.filter((o) => o.kind === 'ServiceMonitor')) {
      const services = objects.filter((o) => o.kind === 'Service' && Object.entries(sm.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => o.metadata.labels?.[k] === v));
      assert.equal(services.length, 1, `ServiceMonitor ${sm.metadata.name} selects one Service`);
      const svc = services[0] as K8sObject;
      assert.ok((sm.spec.namespaceSelector.matchNames as string[]).includes(svc.metadata.namespace ?? ''));
      for (const ep of sm.spec.endpoints as Json[]) {
        assert.ok((svc.spec.ports as Json[]).some((p) => p.name === ep.port), `port ${ep.port} exists on ${svc.metadata.name}`);
        assert.ok((ep.relabelings as Json[]).some((r) => r.targetLabel === 'node' && r.sourceLabels[0] === '__meta_kubernetes_pod_node_name'), 'series carry the node name');
      }
    }
    const rule = find(objects, 'PrometheusRule', 'podidentity');
    assert.deepEqual(rule, parseObjects(readFileSync(join(repoRoot, 'config/prometheus/alerts.yaml'), 'utf8'))[0]);
    const dashboard = find(objects, 'ConfigMap', 'podidentity-grafana-dashboard');
    assert.equal(dashboard.metadata.labels?.grafana_dashboard, '1');
    assert.equal(dashboard.data['podidentity-dashboard.json'], readFileSync(join(repoRoot, 'config/grafana/podidentity-dashboard.json'), 'utf8'));
  });
});

describe('the args the manifests pass are accepted by the programs', async () => {
  const { objects: aks } = await kustomize('config/overlays/aks');
  const { objects: dev } = await kustomize('config/overlays/dev');

  /** What the kubelet does with $(VAR) in args, and what an operator fills in for each <PLACEHOLDER>. */
  function expand(args: string[], env: Record<string, string>): string[] {
    const placeholders: Record<string, string> = {
      SUBSCRIPTION_ID: '00000000-0000-4000-8000-000000000001',
      RESOURCE_GROUP: 'identities',
      LOCATION: 'westeurope',
      AKS_CLUSTER_RESOURCE_ID: '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/aks/providers/Microsoft.ContainerService/managedClusters/prod',
    };
    return args.map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => env[v] ?? '').replace(/<(\w+)>/g, (_, p: string) => placeholders[p] ?? `<${p}>`));
  }

  test('operator (aks overlay): every flag parses, leader election on, ports match the probes', () => {
    const c = container(find(aks, 'Deployment', OPERATOR), 'operator');
    const config = loadOperatorConfig(expand(c.args as string[], { POD_NAMESPACE: NAMESPACE }), {});
    assert.equal(config.leaderElect, true);
    assert.equal(config.leaderElectionNamespace, NAMESPACE);
    assert.equal(config.operatorNamespace, NAMESPACE, 'the ownership ConfigMap lives where the Role grants access');
    assert.equal(config.subscriptionId, '00000000-0000-4000-8000-000000000001');
    assert.ok(config.aksClusterId);
    const port = (c.ports as Json[]).find((p) => p.name === 'metrics');
    assert.equal(config.metricsPort, port.containerPort);
    assert.equal(config.healthPort, undefined, 'probes and metrics share the port');
  });

  test('agent: every flag parses for `run`, ports match the probes and the Service', () => {
    for (const objects of [aks, dev]) {
      const c = container(find(objects, 'DaemonSet', AGENT), 'agent');
      const [command, ...flags] = c.args as string[];
      assert.equal(command, 'run');
      const config = loadAgentConfig(expand(flags, { NODE_NAME: 'aks-nodepool1-12345678-vmss000000', NODE_IP: '10.224.0.4' }), {});
      assert.equal(config.nodeName, 'aks-nodepool1-12345678-vmss000000');
      assert.equal(config.nodeIp, '10.224.0.4');
      const ports = Object.fromEntries((c.ports as Json[]).map((p) => [p.name, p.containerPort]));
      assert.equal(config.listenPort, ports.imds);
      assert.equal(config.metricsPort, ports.metrics);
      assert.equal(find(objects, 'Service', 'podidentity-agent-metrics').spec.ports[0].port, config.metricsPort);
      assert.deepEqual(config.exceptionsConfigMap, { namespace: MIGRATED_EXCEPTIONS.namespace, name: EXCEPTIONS_CONFIGMAP }, 'the agent reads the ConfigMap operator/migrate writes, which its Role grants');
      assert.equal(EXCEPTIONS_KEY, MIGRATED_EXCEPTIONS.key, 'and the same key');
    }
  });
});

/** config/default with these components (paths relative to config/), rendered through a throwaway overlay. */
async function renderWith(components: string[]): Promise<{ objects: K8sObject[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'podid-overlay-'));
  try {
    const rel = (p: string) => relative(dir, join(repoRoot, 'config', 'x', p));
    await writeFile(join(dir, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${rel('../default')}]\ncomponents: [${components.map(rel).join(', ')}]\n`);
    return await kustomize(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the agent-token admission webhook (config/webhook, components/admission-*)', async () => {
  const { objects } = await kustomize('config/default');
  const { objects: aks } = await kustomize('config/overlays/aks');
  const op = container(find(objects, 'Deployment', OPERATOR), 'operator');
  const config = loadOperatorConfig([...(op.args as string[]).map((a) => a.replace('$(POD_NAMESPACE)', NAMESPACE)), '--subscription-id=00000000-0000-4000-8000-000000000001', '--resource-group=rg', '--location=westeurope', '--oidc-issuer=https://issuer.example'], {});
  const webhook = config.webhook!;

  test('is on in the shipped operator, and the configuration fails closed on CREATE serviceaccounts/token only', () => {
    assert.ok(webhook, 'the operator serves the webhook');
    assert.deepEqual(webhook.agentServiceAccount, { namespace: NAMESPACE, serviceAccount: AGENT }, 'it constrains the shipped agent ServiceAccount');
    const vwc = find(objects, 'ValidatingWebhookConfiguration', webhook.configurationName);
    assert.equal(vwc.webhooks.length, 1);
    const [w] = vwc.webhooks as Json[];
    assert.equal(w.failurePolicy, 'Fail');
    assert.equal(w.sideEffects, 'None');
    assert.deepEqual(w.admissionReviewVersions, ['v1']);
    assert.deepEqual(w.rules, [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'], scope: 'Namespaced' }]);
    assert.equal(w.namespaceSelector, undefined, 'every namespace, kube-system included');
    assert.equal(w.clientConfig.caBundle, undefined, 'the operator publishes its own certificate');
    assert.deepEqual(w.clientConfig.service, { name: webhook.service, namespace: NAMESPACE, path: WEBHOOK_PATH, port: 443 });
    const svc = find(objects, 'Service', webhook.service);
    const port = (svc.spec.ports as Json[]).find((p) => p.port === 443);
    assert.equal(port.targetPort, 'webhook');
    assert.equal((op.ports as Json[]).find((p) => p.name === 'webhook').containerPort, webhook.port);
  });

  test('the operator may read and update that one webhook configuration, nothing more', () => {
    const rules = (rulesOf(objects, 'ClusterRole', OPERATOR) as Json[]).filter((r) => (r.apiGroups as string[]).includes('admissionregistration.k8s.io'));
    assert.deepEqual(rules, [{ apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'], resourceNames: [webhook.configurationName], verbs: ['get', 'update'] }]);
  });

  test('the API server calls the webhook only for the agent (matchConditions), so the kubelet never depends on it', () => {
    for (const objs of [objects, aks]) {
      const [w] = find(objs, 'ValidatingWebhookConfiguration', webhook.configurationName).webhooks as Json[];
      // Exactly what the operator keeps there (ca-bundle.ts), so it never rewrites a default install.
      assert.deepEqual(w.matchConditions, agentMatchConditions(agentUsername(webhook.agentServiceAccount)));
    }
  });

  test('components/admission-pre-1.28 removes only the matchConditions', async () => {
    const { objects: old } = await renderWith(['../components/admission-pre-1.28']);
    const [w] = find(old, 'ValidatingWebhookConfiguration', webhook.configurationName).webhooks as Json[];
    assert.equal(w.matchConditions, undefined);
    const [base] = find(objects, 'ValidatingWebhookConfiguration', webhook.configurationName).webhooks as Json[];
    const { matchConditions: _dropped, ...rest } = base;
    assert.deepEqual(w, rest);
    assert.deepEqual(old.filter((o) => o.kind !== 'ValidatingWebhookConfiguration'), objects.filter((o) => o.kind !== 'ValidatingWebhookConfiguration'));
  });

  // Kubernetes 1.30+ only: the local 1.20 control plane can't run it, so its structure and agreement with the
  // webhook are what is checked here.
  test('the ValidatingAdmissionPolicy component (1.30+) repeats the static checks for the agent only', async () => {
    const { objects: objs } = await renderWith(['../components/admission-policy']);
    const added = objs.filter((o) => !objects.some((b) => b.kind === o.kind && b.metadata.name === o.metadata.name));
    assert.deepEqual(added.map((o) => o.kind).sort(), ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
    const policy = find(objs, 'ValidatingAdmissionPolicy', webhook.configurationName);
    const binding = find(objs, 'ValidatingAdmissionPolicyBinding', webhook.configurationName);
    assert.equal(policy.apiVersion, 'admissionregistration.k8s.io/v1');
    assert.equal(binding.apiVersion, 'admissionregistration.k8s.io/v1');
    assert.deepEqual(binding.spec, { policyName: policy.metadata.name, validationActions: ['Deny'] });
    assert.equal(policy.spec.failurePolicy, 'Fail');
    assert.deepEqual(policy.spec.matchConstraints.resourceRules, [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'] }]);
    assert.deepEqual(policy.spec.matchConditions, [{ name: 'only-the-pod-identity-agent', expression: `request.userInfo.username == '${agentUsername(webhook.agentServiceAccount)}'` }]);
    const expressions = (policy.spec.validations as Json[]).map((v) => v.expression as string);
    assert.ok(expressions.some((e) => e.includes(`object.spec.audiences == ['${TOKEN_EXCHANGE_AUDIENCE}']`)));
    assert.ok(expressions.some((e) => e.includes(`object.spec.expirationSeconds <= ${MAX_AGENT_TOKEN_SECONDS}`)));
    assert.ok(expressions.some((e) => e.includes("object.spec.boundObjectRef.kind == 'Pod'") && e.includes("object.spec.boundObjectRef.uid != ''")));
    // A webhook that has been switched off (operator credential) must still not hand over the operator's account.
    assert.ok(expressions.includes("!request.userInfo.username.startsWith('system:serviceaccount:' + request.namespace + ':')"), 'the agent’s own namespace is refused');
    for (const e of expressions) {
      assert.equal((e.match(/\(/g) ?? []).length, (e.match(/\)/g) ?? []).length, `balanced parentheses: ${e}`);
      assert.equal((e.match(/'/g) ?? []).length % 2, 0, `balanced quotes: ${e}`);
    }
    for (const v of policy.spec.validations as Json[]) assert.ok(v.message && v.reason === 'Forbidden');
  });
});
