/**
 * The podidentity.dev/v1alpha1 API, shared by the operator and the agent.
 * The CRD schemas in crds/ are the wire contract; lib/api/schema_test.ts proves these types agree with them.
 */

export const GROUP = 'podidentity.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const PODIDENTITY_KIND = 'PodIdentity';
export const PODIDENTITY_PLURAL = 'podidentities';
export const POLICY_KIND = 'PodIdentityPolicy';
export const POLICY_PLURAL = 'podidentitypolicies';

/** Added before any Azure side effect, removed once Azure is cleaned up (or retained). */
export const FINALIZER = 'podidentity.dev/finalizer';
/** The label a pod carries to be selected by a PodIdentity that has no explicit selector. */
export const DEFAULT_SELECTOR_LABEL = 'podidentity.dev/identity';
/** The token audience Azure AD expects from a federated assertion. */
export const TOKEN_EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';

export const MODES = ['Federated', 'Node'] as const;
export type Mode = (typeof MODES)[number];

export const DELETION_POLICIES = ['Delete', 'Retain'] as const;
export type DeletionPolicy = (typeof DELETION_POLICIES)[number];

export const MAX_ROLE_ASSIGNMENTS = 20;
export const MAX_SERVICE_ACCOUNTS = 20;
/** Azure's limit on federated identity credentials per user-assigned identity. */
export const MAX_FEDERATED_CREDENTIALS = 20;
/** Azure's limit on user-assigned identities per VM or scale set. */
export const MAX_SCALE_SET_IDENTITIES = 100;

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string | Date;
  creationTimestamp?: string | Date;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface ManagedIdentitySpec {
  /** Azure name of the identity. Defaults to `<namespace>_<name>`; a name holding `_` must start with `<namespace>_`. */
  name?: string;
  /** Defaults to the operator's default resource group. */
  resourceGroup?: string;
  /** Defaults to the operator's default location. */
  location?: string;
  tags?: Record<string, string>;
}

export interface ExistingIdentitySpec {
  /** Full ARM resource id of a user-assigned identity. */
  resourceId: string;
}

export interface IdentitySource {
  managed?: ManagedIdentitySpec;
  existing?: ExistingIdentitySpec;
}

export interface RoleAssignmentSpec {
  /** A built-in role name ("Reader") or a full roleDefinitionId. */
  role: string;
  /** An ARM scope: a subscription, resource group or resource id. */
  scope: string;
}

export interface PodIdentitySpec {
  identity: IdentitySource;
  roleAssignments?: RoleAssignmentSpec[];
  selector?: LabelSelector;
  mode?: Mode;
  serviceAccounts?: string[];
  deletionPolicy?: DeletionPolicy;
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** The metav1.Condition shape. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export const CONDITION_READY = 'Ready';
export const CONDITION_IDENTITY_READY = 'IdentityReady';
export const CONDITION_ROLES_ASSIGNED = 'RolesAssigned';
export const CONDITION_CREDENTIALS_READY = 'CredentialsReady';
export const CONDITION_NODES_ASSIGNED = 'NodesAssigned';
/** Federated mode: whether Azure AD has accepted the credentials (an exchange succeeded since the last write). */
export const CONDITION_CREDENTIAL_PROPAGATED = 'FederatedCredentialPropagated';
/** The Event an agent records on a PodIdentity when its first exchange after a credential write succeeds. */
export const EVENT_FIRST_TOKEN_EXCHANGE = 'FirstTokenExchange';

export type RoleAssignmentState = 'Assigned' | 'Pending' | 'Failed' | 'Denied';

export interface RoleAssignmentStatus {
  role: string;
  scope: string;
  roleDefinitionId?: string;
  /** ARM id of the role assignment. */
  id?: string;
  state: RoleAssignmentState;
  message?: string;
}

export interface FederatedCredentialStatus {
  name: string;
  issuer: string;
  subject: string;
  /**
   * When the operator last created or changed the credential in Azure (RFC 3339). Azure AD accepts a new
   * credential only after it propagates; the agent reads this to tell propagation from a missing credential.
   */
  lastWriteTime?: string;
}

/** The first token exchange that succeeded after the latest credential write (from an agent's Event). */
export interface FirstExchangeStatus {
  time: string;
  node?: string;
}

export interface NodeAssignmentStatus {
  /** ARM id of the scale set. */
  scaleSet: string;
  nodes?: string[];
  state: 'Assigned' | 'Pending' | 'Failed';
}

export interface PodIdentityStatus {
  observedGeneration?: number;
  mode?: Mode;
  clientId?: string;
  principalId?: string;
  tenantId?: string;
  resourceId?: string;
  roleAssignments?: RoleAssignmentStatus[];
  federatedCredentials?: FederatedCredentialStatus[];
  firstSuccessfulExchange?: FirstExchangeStatus;
  nodeAssignments?: NodeAssignmentStatus[];
  conditions?: Condition[];
}

export interface PodIdentity {
  apiVersion: typeof API_VERSION;
  kind: typeof PODIDENTITY_KIND;
  metadata: ObjectMeta;
  spec: PodIdentitySpec;
  status?: PodIdentityStatus;
}

export interface PodIdentityPolicySpec {
  /** Namespaces this policy applies to. An empty selector selects every namespace. */
  namespaceSelector?: LabelSelector;
  /** Role names or roleDefinitionIds that may be assigned. */
  allowedRoles?: string[];
  /** ARM scope prefixes, or globs where `*` matches one path segment and a trailing `/**` any suffix. */
  allowedScopes?: string[];
  /** Resource ids (or globs) of existing identities that may be adopted. */
  allowedExistingIdentities?: string[];
  allowedModes?: Mode[];
}

export interface PodIdentityPolicy {
  apiVersion: typeof API_VERSION;
  kind: typeof POLICY_KIND;
  metadata: ObjectMeta;
  spec: PodIdentityPolicySpec;
}

/** The parts of a PodIdentity that say which pods it selects. */
export interface SelectingIdentity {
  metadata: ObjectMeta;
  spec: Partial<PodIdentitySpec>;
  status?: Pick<PodIdentityStatus, 'mode'>;
}

/** The selector a PodIdentity uses, with the documented default when none is given. */
export function effectiveSelector(pid: SelectingIdentity): LabelSelector {
  return pid.spec.selector ?? { matchLabels: { [DEFAULT_SELECTOR_LABEL]: pid.metadata.name ?? '' } };
}
