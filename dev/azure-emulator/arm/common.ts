/** Helpers shared by the ARM resource providers: lookups with ARM's 404s, authorization, paging. */
import type { AuthzAttributes, AzureState, ResourceGroup } from '../state.js';
import { armError, type RequestContext, type Reply } from '../router.js';

export interface ArmSettings {
  /** Items per list page; longer lists get an absolute `nextLink`. */
  pageSize: number;
  /** How long one federated-credential write holds its identity's write lock. */
  ficWriteWindowMs: number;
  principalReplicationDelayMs: number;
  /** How long a scale-set PATCH operation reports InProgress before Succeeded. */
  lroDurationMs: number;
  /**
   * How long a new or changed federated credential stays invisible to Azure AD's token endpoint (which answers
   * AADSTS70021 until then, as the real service does while the credential propagates). Read at each write.
   */
  ficPropagationDelayMs: number;
}

export interface ArmDeps {
  state: AzureState;
  settings: ArmSettings;
  stopping: AbortSignal;
}

/** `GUID` regex fragment for route patterns and validation. */
export const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function requireSubscription(deps: ArmDeps, subscriptionId: string): void {
  if (!deps.state.isOurSubscription(subscriptionId)) {
    throw armError(404, 'SubscriptionNotFound', `The subscription '${subscriptionId}' could not be found.`);
  }
}

export function requireResourceGroup(deps: ArmDeps, subscriptionId: string, name: string): ResourceGroup {
  requireSubscription(deps, subscriptionId);
  const rg = deps.state.resourceGroup(name);
  if (!rg) throw armError(404, 'ResourceGroupNotFound', `Resource group '${name}' could not be found.`);
  return rg;
}

export function notFound(type: string, name: string, rg: string): never {
  throw armError(404, 'ResourceNotFound', `The Resource '${type}/${name}' under resource group '${rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`);
}

export function callerOf(ctx: RequestContext): string {
  if (!ctx.caller) throw armError(401, 'AuthenticationFailed', 'Authentication failed.');
  return ctx.caller.principalId;
}

/**
 * 403 AuthorizationFailed unless the caller holds a role at `scope` or above that grants `action` (and, for a
 * conditioned assignment, whose ABAC condition holds for `attributes`). `reportedScope` is the scope Azure
 * names in the message (for role assignments: the assignment's id).
 */
export function authorize(deps: ArmDeps, ctx: RequestContext, action: string, scope: string, attributes?: AuthzAttributes, reportedScope = scope): void {
  const principalId = callerOf(ctx);
  const decision = deps.state.authorize(principalId, action, scope, attributes);
  if (decision === 'conditionNotMet') {
    throw armError(
      403,
      'AuthorizationFailed',
      `The client '${ctx.caller?.clientId}' with object id '${principalId}' has an authorization with ABAC condition that is not fulfilled to perform action '${action}' over scope '${reportedScope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
    );
  }
  if (decision !== 'allowed') {
    throw armError(
      403,
      'AuthorizationFailed',
      `The client '${ctx.caller?.clientId}' with object id '${principalId}' does not have authorization to perform action '${action}' over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
    );
  }
}

/** One page of `items`, with an absolute `nextLink` (same host, same query plus `$skiptoken`) when more remain. */
export function page<T>(deps: ArmDeps, ctx: RequestContext, items: T[]): Reply {
  const skip = Number(ctx.query.get('$skiptoken') ?? '0') || 0;
  const topParam = Number(ctx.query.get('$top') ?? '0');
  const size = topParam > 0 ? Math.min(topParam, deps.settings.pageSize) : deps.settings.pageSize;
  const value = items.slice(skip, skip + size);
  const body: { value: T[]; nextLink?: string } = { value };
  if (skip + size < items.length) {
    const q = new URLSearchParams(ctx.query);
    q.set('$skiptoken', String(skip + size));
    const rawPath = (ctx.req.url ?? '/').replace(/^\/+/, '/').split('?')[0] ?? '/';
    body.nextLink = `${ctx.baseUrl}${rawPath}?${q.toString()}`;
  }
  return { status: 200, body };
}

export function asRecord(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw armError(400, 'InvalidRequestContent', 'The request content was invalid and could not be deserialized: expected a JSON object.');
  }
  return value as Record<string, unknown>;
}

export function stringTags(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  const rec = asRecord(value);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(rec)) {
    if (typeof v !== 'string') throw armError(400, 'InvalidRequestContent', `Tag '${k}' must be a string.`);
    out[k] = v;
  }
  return out;
}
