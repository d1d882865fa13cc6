/**
 * The agent-token admission webhook, as the operator runs it: a self-signed serving certificate made at start,
 * the HTTPS endpoint, and a loop that keeps the certificate in the ValidatingWebhookConfiguration's caBundle
 * (and rotates it before it expires). Ready once the API server can trust this replica.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../lib/log.js';
import { apiCaBundleStore, CN_PREFIX, publishCaBundle, type CaBundleStore } from './ca-bundle.js';
import { LiveIdentityLookup, LivePodLookup, LiveServiceAccountLookup, type ServiceAccountLookup } from './pods.js';
import { selfSignedServingCertificate } from './self-signed.js';
import { agentUsername, TokenRequestPolicy, type AgentIdentity, type IdentityLookup, type PodLookup } from './token-request-policy.js';
import { startWebhookServer } from './webhook-server.js';

export { TokenRequestPolicy, agentUsername, MAX_AGENT_TOKEN_SECONDS } from './token-request-policy.js';
export { WEBHOOK_PATH } from './webhook-server.js';
export { agentMatchConditions } from './ca-bundle.js';

export interface AgentTokenAdmissionOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  port: number;
  host?: string;
  /** DNS names and IPs the API server uses to reach this webhook (the Service's, or loopback in tests). */
  hosts: string[];
  /** The ValidatingWebhookConfiguration whose caBundle this replica keeps its certificate in. */
  configurationName: string;
  agent: AgentIdentity;
  /** This replica's pod (POD_NAME) and namespace: other replicas keep their certificates while their pod exists. */
  podName: string;
  podNamespace: string;
  registry?: Registry;
  certificateDays?: number;
  republishIntervalMs?: number;
  /** Tests: another pod source or bundle store. */
  pods?: PodLookup;
  identities?: IdentityLookup;
  serviceAccounts?: ServiceAccountLookup;
  caBundleStore?: CaBundleStore;
}

export interface AgentTokenAdmission {
  port: number;
  /** This replica's certificate is in the caBundle (the API server can call it). */
  ready(): boolean;
  certPem(): string;
  close(): Promise<void>;
}

const DAY_MS = 86400_000;

export async function startAgentTokenAdmission(opts: AgentTokenAdmissionOptions): Promise<AgentTokenAdmission> {
  const days = opts.certificateDays ?? 90;
  const makeCert = () => selfSignedServingCertificate(`${CN_PREFIX}${opts.podName}`, opts.hosts, days);
  let cert = makeCert();
  const pods = opts.pods ?? new LivePodLookup(opts.kubeConfig);
  const decisions = opts.registry
    ? new Counter({ name: 'podidentity_operator_admission_decisions_total', help: 'Agent TokenRequest admission decisions by outcome (allowed, denied, unavailable, bad_request).', labelNames: ['outcome'], registers: [opts.registry] })
    : undefined;
  const server = await startWebhookServer({
    port: opts.port,
    ...(opts.host ? { host: opts.host } : {}),
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    policy: new TokenRequestPolicy(opts.agent, pods, opts.identities ?? new LiveIdentityLookup(opts.kubeConfig)),
    logger: opts.logger,
    onDecision: (outcome) => decisions?.inc({ outcome }),
  });
  const store = opts.caBundleStore ?? apiCaBundleStore(opts.kubeConfig, opts.configurationName);
  let published = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const publish = async (certPem: string) => {
    const { changed } = await publishCaBundle({
      store,
      certPem,
      podName: opts.podName,
      podExists: async (name) => (await pods.get(opts.podNamespace, name)) !== undefined,
      agentUsername: agentUsername(opts.agent),
    });
    if (changed) opts.logger.info('webhook certificate and agent matchConditions published', { configuration: opts.configurationName });
  };

  const serviceAccounts = opts.serviceAccounts ?? new LiveServiceAccountLookup(opts.kubeConfig);
  const agentName = `${opts.agent.namespace}/${opts.agent.serviceAccount}`;

  const tick = async () => {
    try {
      // The webhook constrains that one username. If it names no ServiceAccount (the agent was renamed, e.g.
      // by a kustomize namePrefix, and --agent-service-account was not), the real agent would go unchecked:
      // stay unpublished and not Ready, so the rollout fails loudly instead of failing open quietly.
      if (!(await serviceAccounts.exists(opts.agent.namespace, opts.agent.serviceAccount))) {
        throw new Error(`the agent's ServiceAccount ${agentName} does not exist; set --agent-service-account to the agent's <namespace>:<name>`);
      }
      // Rotate with a third of the lifetime left: publish the new certificate first, then serve it.
      if (cert.notAfter.getTime() - Date.now() < (days * DAY_MS) / 3) {
        const next = makeCert();
        await publish(next.certPem);
        server.setCertificate(next.certPem, next.keyPem);
        cert = next;
        opts.logger.info('webhook certificate rotated', { notAfter: cert.notAfter.toISOString() });
      } else {
        await publish(cert.certPem);
      }
      published = true;
    } catch (err) {
      opts.logger.error('publishing the webhook certificate failed; agent TokenRequests fail closed until it succeeds', { configuration: opts.configurationName, err: (err as Error).message });
    }
    if (!stopped) {
      // Until the first publish succeeds, retry soon; afterwards, repair a caBundle someone overwrote.
      timer = setTimeout(() => void tick(), published ? (opts.republishIntervalMs ?? 60_000) : 5_000);
      timer.unref();
    }
  };
  await tick();

  return {
    port: server.port,
    ready: () => published,
    certPem: () => cert.certPem,
    close: async () => {
      stopped = true;
      clearTimeout(timer);
      await server.close();
    },
  };
}
