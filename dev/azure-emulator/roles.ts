/** Built-in role definitions (real GUIDs) and Azure's action-pattern matching, for role assignments and ARM authz. */

export interface BuiltInRole {
  guid: string;
  roleName: string;
  description: string;
  actions: string[];
  notActions: string[];
  dataActions?: string[];
}

export const BUILT_IN_ROLES: BuiltInRole[] = [
  { guid: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635', roleName: 'Owner', description: 'Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.', actions: ['*'], notActions: [] },
  {
    guid: 'b24988ac-6180-42a0-ab88-20f7382dd24c',
    roleName: 'Contributor',
    description: 'Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.',
    actions: ['*'],
    notActions: ['Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write', 'Microsoft.Authorization/elevateAccess/Action'],
  },
  { guid: 'acdd72a7-3385-48ef-bd42-f606fba81ae7', roleName: 'Reader', description: 'View all resources, but does not allow you to make any changes.', actions: ['*/read'], notActions: [] },
  { guid: '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9', roleName: 'User Access Administrator', description: 'Lets you manage user access to Azure resources.', actions: ['*/read', 'Microsoft.Authorization/*', 'Microsoft.Support/*'], notActions: [] },
  {
    guid: 'f58310d9-a9f6-439a-9e8d-f62e7b41a168',
    roleName: 'Role Based Access Control Administrator',
    description: 'Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you to manage access using other ways, such as Azure Policy.',
    actions: ['Microsoft.Authorization/roleAssignments/write', 'Microsoft.Authorization/roleAssignments/delete', '*/read', 'Microsoft.Support/*'],
    notActions: [],
  },
  {
    guid: 'f1a07417-d97a-45cb-824c-7a7467783830',
    roleName: 'Managed Identity Operator',
    description: 'Read and Assign User Assigned Identity',
    actions: ['Microsoft.ManagedIdentity/userAssignedIdentities/*/read', 'Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action', 'Microsoft.Authorization/*/read', 'Microsoft.Resources/subscriptions/resourceGroups/read'],
    notActions: [],
  },
  {
    guid: 'e40ec5ca-96e0-45a2-b4ff-59039f2c2b59',
    roleName: 'Managed Identity Contributor',
    description: 'Create, Read, Update, and Delete User Assigned Identity',
    actions: ['Microsoft.ManagedIdentity/userAssignedIdentities/read', 'Microsoft.ManagedIdentity/userAssignedIdentities/write', 'Microsoft.ManagedIdentity/userAssignedIdentities/delete', 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/*', 'Microsoft.Authorization/*/read', 'Microsoft.Resources/subscriptions/resourceGroups/read'],
    notActions: [],
  },
  {
    guid: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c',
    roleName: 'Virtual Machine Contributor',
    description: 'Create and manage virtual machines, manage disks, install and run software, reset password of the root user of the virtual machine using VM extensions, and manage local user accounts using VM extensions.',
    actions: ['Microsoft.Compute/virtualMachines/*', 'Microsoft.Compute/virtualMachineScaleSets/*', 'Microsoft.Compute/locations/*', 'Microsoft.Authorization/*/read', 'Microsoft.Resources/subscriptions/resourceGroups/read'],
    notActions: [],
  },
  {
    guid: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
    roleName: 'Storage Blob Data Reader',
    description: 'Read and list Azure Storage containers and blobs.',
    actions: ['Microsoft.Storage/storageAccounts/blobServices/containers/read', 'Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action'],
    notActions: [],
    dataActions: ['Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'],
  },
];

export function roleByGuid(guid: string): BuiltInRole | undefined {
  const g = guid.toLowerCase();
  return BUILT_IN_ROLES.find((r) => r.guid === g);
}

export function roleByName(name: string): BuiltInRole | undefined {
  const n = name.toLowerCase();
  return BUILT_IN_ROLES.find((r) => r.roleName.toLowerCase() === n);
}

const patternCache = new Map<string, RegExp>();

function actionPattern(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (!re) {
    const body = pattern
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')
      .replace(/\/\.\*\//g, '/(?:.*/)?');
    re = new RegExp(`^${body}$`, 'i');
    patternCache.set(pattern, re);
  }
  return re;
}

/** Whether `role` grants the control-plane `action` (actions minus notActions, Azure wildcard rules). */
export function roleAllows(role: BuiltInRole, action: string): boolean {
  return role.actions.some((p) => actionPattern(p).test(action)) && !role.notActions.some((p) => actionPattern(p).test(action));
}
