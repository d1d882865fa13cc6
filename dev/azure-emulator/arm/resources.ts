/** Microsoft.Resources: subscriptions (list, get) and resource groups (PUT, GET, list). */
import { armError, type Route } from '../router.js';
import type { ResourceGroup } from '../state.js';
import { asRecord, authorize, callerOf, page, requireResourceGroup, requireSubscription, stringTags, type ArmDeps } from './common.js';

const RG_ACTION = 'Microsoft.Resources/subscriptions/resourceGroups';

export function resourceGroupJson(rg: ResourceGroup): Record<string, unknown> {
  return { id: rg.id, name: rg.name, type: 'Microsoft.Resources/resourceGroups', location: rg.location, tags: rg.tags, properties: { provisioningState: 'Succeeded' } };
}

export function resourceRoutes(deps: ArmDeps): Route[] {
  const { state } = deps;
  const subscriptionJson = () => ({
    id: state.subscriptionScope,
    subscriptionId: state.subscriptionId,
    tenantId: state.tenantId,
    displayName: 'Azure emulator subscription',
    state: 'Enabled',
    subscriptionPolicies: { locationPlacementId: 'Public_2014-09-01', quotaId: 'PayAsYouGo_2014-09-01', spendingLimit: 'Off' },
    authorizationSource: 'RoleBased',
  });
  return [
    {
      name: 'subscriptions.list',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions$/i,
      handle(ctx) {
        const caller = callerOf(ctx);
        const visible = [...state.roleAssignmentsById.values()].some((ra) => ra.principalId === caller);
        return page(deps, ctx, visible ? [subscriptionJson()] : []);
      },
    },
    {
      name: 'subscriptions.get',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)$/i,
      handle(ctx) {
        requireSubscription(deps, ctx.params[0] ?? '');
        authorize(deps, ctx, 'Microsoft.Resources/subscriptions/read', state.subscriptionScope);
        return { status: 200, body: subscriptionJson() };
      },
    },
    {
      name: 'resourceGroups.list',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups$/i,
      handle(ctx) {
        requireSubscription(deps, ctx.params[0] ?? '');
        const caller = callerOf(ctx);
        const items = [...state.resourceGroupsByName.values()].filter((rg) => state.can(caller, `${RG_ACTION}/read`, rg.id));
        return page(deps, ctx, items.map(resourceGroupJson));
      },
    },
    {
      name: 'resourceGroups.get',
      method: 'GET',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)$/i,
      handle(ctx) {
        const [sub = '', name = ''] = ctx.params;
        authorize(deps, ctx, `${RG_ACTION}/read`, `${state.subscriptionScope}/resourceGroups/${name}`);
        return { status: 200, body: resourceGroupJson(requireResourceGroup(deps, sub, name)) };
      },
    },
    {
      name: 'resourceGroups.put',
      method: 'PUT',
      family: 'arm',
      pattern: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)$/i,
      handle(ctx) {
        const [sub = '', name = ''] = ctx.params;
        requireSubscription(deps, sub);
        authorize(deps, ctx, `${RG_ACTION}/write`, `${state.subscriptionScope}/resourceGroups/${name}`);
        if (!/^[-\w._()]{1,90}$/.test(name) || name.endsWith('.')) {
          throw armError(400, 'InvalidResourceGroup', `The provided resource group name '${name}' has these invalid characters or is too long.`);
        }
        const body = asRecord(ctx.json());
        const location = body['location'];
        if (typeof location !== 'string' || !location) throw armError(400, 'LocationRequired', 'The location property is required for this definition.');
        const { rg, created } = state.putResourceGroup(name, location, stringTags(body['tags']));
        return { status: created ? 201 : 200, body: resourceGroupJson(rg) };
      },
    },
  ];
}
