/**
 * Which TokenRequests the node agent may make. RBAC can only say "create serviceaccounts/token anywhere";
 * this decides, for the agent's identity alone, that each token is exactly what Federated issuance needs:
 * audience api://AzureADTokenExchange, bound to a live Pod (name and uid) that runs on the agent's own node,
 * is not hostNetwork, has not finished and is selected by a PodIdentity, for that pod's own service account
 * (not one of the agent's own namespace), and short-lived. Everyone else is let through untouched: the webhook is
 * called for every TokenRequest on clusters without matchConditions (the kubelet's included).
 */
import { matchesSelector } from '../../lib/api/selector.js';
import { effectiveSelector, TOKEN_EXCHANGE_AUDIENCE, type SelectingIdentity } from '../../lib/api/types.js';

/**
 * The longest assertion the agent may mint: the API server's minimum (600 s), which is what the agent asks
 * for. The assertion is exchanged with Azure AD at once; anything longer only helps whoever steals it.
 */
export const MAX_AGENT_TOKEN_SECONDS = 600;

export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
/** Added by API servers from 1.30 (ServiceAccountTokenPodNodeInfo); absent on older ones. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

/** The part of a Pod the decision reads. */
export interface PodFacts {
  uid: string;
  nodeName: string;
  serviceAccountName: string;
  /** status.phase; '' while the API server has not set it. */
  phase?: string;
  /** spec.hostNetwork: such a pod shares the node's IP, so the agent never attributes a caller to it. */
  hostNetwork?: boolean;
  labels?: Record<string, string>;
}

/** Live reads of PodIdentities, like pods: one deleted a moment ago no longer lets the agent mint. */
export interface IdentityLookup {
  /** Throws when the API server can't say (the caller fails closed). */
  inNamespace(namespace: string): Promise<SelectingIdentity[]>;
}

/**
 * A pod in one of these phases runs no more (all its containers have terminated and won't restart), so
 * nothing on its node can still ask for its identity; it may stay on the node, with its service account,
 * for as long as nobody deletes it (a finished Job's pod).
 */
const FINISHED_PHASES = new Set(['Succeeded', 'Failed']);

/** Live reads, never a cache: a pod deleted and recreated elsewhere must not keep its old node. */
export interface PodLookup {
  /** undefined: the pod does not exist. Throws when the API server can't say (the caller fails closed). */
  get(namespace: string, name: string): Promise<PodFacts | undefined>;
}

/** The fields of an admission.k8s.io/v1 AdmissionRequest this reads. */
export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  userInfo?: { username?: string; extra?: Record<string, string[] | undefined> };
  object?: unknown;
}

export type Decision =
  | { allowed: true }
  /** 403: the request breaks the rules. 503: the webhook could not establish the facts (fail closed, retry). */
  | { allowed: false; code: 403 | 503; message: string };

const ALLOW: Decision = { allowed: true };

function deny(message: string): Decision {
  return { allowed: false, code: 403, message: `the pod identity agent may not mint this token: ${message}` };
}

function unavailable(message: string): Decision {
  return { allowed: false, code: 503, message: `the pod identity agent's token request can't be checked now: ${message}` };
}

/** `system:serviceaccount:<namespace>:<name>`, the agent's username. */
export interface AgentIdentity {
  namespace: string;
  serviceAccount: string;
}

export function agentUsername(agent: AgentIdentity): string {
  return `system:serviceaccount:${agent.namespace}:${agent.serviceAccount}`;
}

function single(extra: Record<string, string[] | undefined> | undefined, key: string): string | undefined {
  const values = extra?.[key];
  return Array.isArray(values) && values.length === 1 && typeof values[0] === 'string' && values[0] !== '' ? values[0] : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Agent pods remembered by uid; one per node, so this only bounds churn. */
const MAX_REMEMBERED_AGENT_PODS = 10_000;

export class TokenRequestPolicy {
  private readonly username: string;
  /**
   * uid → node of agent pods already read. A pod's node never changes and a uid is never reused, and the API
   * server itself refuses a pod-bound credential once its pod is gone, so this can't go stale.
   */
  private readonly agentNodes = new Map<string, string>();

  constructor(
    private readonly agent: AgentIdentity,
    private readonly pods: PodLookup,
    private readonly identities: IdentityLookup,
  ) {
    this.username = agentUsername(agent);
  }

  async decide(request: AdmissionRequest): Promise<Decision> {
    // Only the agent's identity is constrained; the kubelet and everything else keep the API server's rules.
    if (request.userInfo?.username !== this.username) return ALLOW;

    const isTokenRequest =
      request.operation === 'CREATE' &&
      request.resource?.group === '' &&
      request.resource?.resource === 'serviceaccounts' &&
      request.subResource === 'token' &&
      request.kind?.group === 'authentication.k8s.io' &&
      request.kind?.kind === 'TokenRequest';
    if (!isTokenRequest) return deny('only TokenRequests (CREATE serviceaccounts/token) are checked here');
    const namespace = request.namespace ?? '';
    const serviceAccount = request.name ?? '';
    if (!namespace || !serviceAccount) return deny('the request names no service account');
    // The pod identity system's own namespace holds the operator, whose service account is federated with an
    // Azure identity that assigns roles (AKS workload identity). A replica may run on the agent's node; the
    // agent never serves a pod there, so it never needs a token of that namespace.
    if (namespace === this.agent.namespace) return deny(`it never mints tokens for service accounts of its own namespace ${namespace}`);

    const spec = isRecord(request.object) && isRecord(request.object['spec']) ? request.object['spec'] : undefined;
    if (!spec) return deny('the TokenRequest has no spec');
    const audiences = spec['audiences'];
    if (!Array.isArray(audiences) || audiences.length !== 1 || audiences[0] !== TOKEN_EXCHANGE_AUDIENCE) {
      return deny(`spec.audiences must be exactly ["${TOKEN_EXCHANGE_AUDIENCE}"], got ${JSON.stringify(audiences ?? [])}`);
    }
    // The API server defaults an omitted expirationSeconds to 3600 before admission, so it is always set here.
    const expiration = spec['expirationSeconds'];
    if (typeof expiration !== 'number' || !Number.isInteger(expiration) || expiration > MAX_AGENT_TOKEN_SECONDS) {
      return deny(`spec.expirationSeconds must be at most ${MAX_AGENT_TOKEN_SECONDS}, got ${JSON.stringify(expiration ?? null)}`);
    }
    const ref = spec['boundObjectRef'];
    if (!isRecord(ref)) return deny('spec.boundObjectRef must bind the token to a Pod');
    if (ref['kind'] !== 'Pod' || ref['apiVersion'] !== 'v1') {
      return deny(`spec.boundObjectRef must be a v1 Pod, got ${JSON.stringify(ref['apiVersion'] ?? '')} ${JSON.stringify(ref['kind'] ?? '')}`);
    }
    const podName = ref['name'];
    const podUid = ref['uid'];
    if (typeof podName !== 'string' || !podName) return deny('spec.boundObjectRef.name is required');
    // The uid pins the exact pod this webhook checked: the API server refuses the token if the name now
    // belongs to a pod recreated elsewhere.
    if (typeof podUid !== 'string' || !podUid) return deny('spec.boundObjectRef.uid is required');

    const agentNode = await this.agentNode(request);
    if (!agentNode.ok) return agentNode.decision;

    // Both reads at once: the agent's miss waits on this webhook, and the API server gives it timeoutSeconds.
    const identitiesRead = this.identities.inNamespace(namespace).then(
      (candidates) => ({ ok: true as const, candidates }),
      (err: unknown) => ({ ok: false as const, err: err as Error }),
    );
    let pod: PodFacts | undefined;
    try {
      pod = await this.pods.get(namespace, podName);
    } catch (err) {
      return unavailable(`reading pod ${namespace}/${podName}: ${(err as Error).message}`);
    }
    // One answer for "no such pod" and "another uid", never the real uid: the webhook's port answers anyone,
    // and a forged review must not tell a caller which pods exist or what their uids are.
    if (!pod || pod.uid !== podUid) return deny(`there is no pod ${namespace}/${podName} with uid ${podUid}`);
    if (pod.serviceAccountName !== serviceAccount) {
      return deny(`pod ${namespace}/${podName} runs as service account ${pod.serviceAccountName}, not ${serviceAccount}`);
    }
    if (!pod.nodeName || pod.nodeName !== agentNode.node) {
      return deny(`pod ${namespace}/${podName} runs on node ${JSON.stringify(pod.nodeName)}, not on the agent's node ${agentNode.node}`);
    }
    if (pod.phase && FINISHED_PHASES.has(pod.phase)) return deny(`pod ${namespace}/${podName} has finished (phase ${pod.phase})`);
    // The node's system DaemonSets (CNI, kube-proxy, CSI) are hostNetwork and hold its most powerful service
    // accounts; the agent never serves a hostNetwork pod, so it never needs their tokens.
    if (pod.hostNetwork) return deny(`pod ${namespace}/${podName} uses the host network and never gets a pod identity`);
    // The agent serves a pod only the identities of PodIdentities that select it. Without one, the pod's
    // account may still be federated with an Azure identity by someone else (AKS workload identity); that is
    // not the agent's to hand out.
    const identities = await identitiesRead;
    if (!identities.ok) return unavailable(`reading PodIdentities in ${namespace}: ${identities.err.message}`);
    // A Node-mode identity is issued from the node's own IMDS, never through a TokenRequest. A mode not yet
    // known (no status, no spec.mode) follows the agent's --default-mode, which this can't see: allowed.
    const labels = pod.labels ?? {};
    const selected = identities.candidates.some((pid) => !pid.metadata.deletionTimestamp && (pid.status?.mode ?? pid.spec.mode) !== 'Node' && matchesSelector(effectiveSelector(pid), labels));
    if (!selected) return deny(`no PodIdentity in namespace ${namespace} selects pod ${podName} in Federated mode`);
    return ALLOW;
  }

  /**
   * The agent's node, from its own credential: a pod-bound service-account token carries the pod's name and
   * uid (and, from 1.30, the node) in userInfo.extra. A credential without them can't be placed on a node.
   */
  private async agentNode(request: AdmissionRequest): Promise<{ ok: true; node: string } | { ok: false; decision: Decision }> {
    const extra = request.userInfo?.extra;
    const node = single(extra, NODE_NAME_EXTRA);
    if (node) return { ok: true, node };
    const name = single(extra, POD_NAME_EXTRA);
    const uid = single(extra, POD_UID_EXTRA);
    if (!name || !uid) {
      return { ok: false, decision: deny(`its credential is not bound to a pod (no ${POD_NAME_EXTRA}/${POD_UID_EXTRA}), so its node is unknown; run the agent with a projected service-account token`) };
    }
    const known = this.agentNodes.get(uid);
    if (known) return { ok: true, node: known };
    let own: PodFacts | undefined;
    try {
      own = await this.pods.get(this.agent.namespace, name);
    } catch (err) {
      return { ok: false, decision: unavailable(`reading the agent's pod ${this.agent.namespace}/${name}: ${(err as Error).message}`) };
    }
    if (!own || own.uid !== uid) return { ok: false, decision: deny(`the agent's pod ${this.agent.namespace}/${name} (uid ${uid}) no longer exists`) };
    if (own.serviceAccountName !== this.agent.serviceAccount) return { ok: false, decision: deny(`pod ${this.agent.namespace}/${name} does not run as the agent's service account`) };
    if (!own.nodeName) return { ok: false, decision: deny(`the agent's pod ${this.agent.namespace}/${name} is not scheduled to a node`) };
    if (own.phase && FINISHED_PHASES.has(own.phase)) return { ok: false, decision: deny(`the agent's pod ${this.agent.namespace}/${name} has finished (phase ${own.phase})`) };
    if (this.agentNodes.size >= MAX_REMEMBERED_AGENT_PODS) this.agentNodes.clear();
    this.agentNodes.set(uid, own.nodeName);
    return { ok: true, node: own.nodeName };
  }
}
