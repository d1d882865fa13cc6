#!/usr/bin/env bash
# Grants the pod-identity-operator's own Azure identity the least-privilege rights it needs, with `az`.
# The role-assignment right is "Role Based Access Control Administrator" with an ABAC condition: the operator
# can assign and remove only the roles you list (the union of what your PodIdentityPolicies may ever allow),
# only to service principals, and only at the scopes you list. A bug in the operator, or in a policy, cannot
# grant more: Azure itself refuses (403 AuthorizationFailed). See operator/README.md, "Azure rights".
#
# Idempotent: az role assignment create answers "exists" for a repeat; custom roles are created once.
# --dry-run prints every az command instead of running it (and needs no az login).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: grant-operator-rights.sh --assignee-object-id <guid> --subscription <guid>
         --identity-resource-group <rg> [--identity-resource-group <rg>]...
         [--role-scope <scope>]... [--allowed-role <name-or-guid>]...
         [--existing-identity-scope <scope>]... [--mode Federated|Node] [--node-resource-group <rg>]...
         [--aks-cluster-id <id>] [--dry-run]

  --assignee-object-id       object (principal) id of the operator's own identity
  --subscription             subscription id
  --identity-resource-group  resource group where the operator creates identities (its --resource-group, and
                             every other group policies allow for identity.managed.resourceGroup)
  --role-scope               scope where PodIdentities may get role assignments (each allowedScopes prefix)
  --allowed-role             a role policies may allow (name or definition GUID); repeat for each
  --existing-identity-scope  scope of identities PodIdentities may adopt (allowedExistingIdentities prefixes):
                             the operator writes their federated credentials (and, in Node mode, assigns them)
  --mode                     Federated (default) or Node (adds scale-set identity writes on node resource groups)
  --node-resource-group      the AKS node resource group(s) with the scale sets (Node mode)
  --aks-cluster-id           the AKS cluster, if the operator reads its OIDC issuer from it (--aks-cluster-id)
  --dry-run                  print the az commands, run nothing
EOF
}

die() {
  printf 'grant-operator-rights: %s\n' "$*" >&2
  exit 2
}

# Role definitions that would let the operator grant anything, or hand out role management itself.
readonly OWNER=8e3af657-a8ff-443c-a75c-2fe8c4bcb635
readonly USER_ACCESS_ADMIN=18d7d88d-d35e-4fb5-a5c3-7773c20a72d9
readonly RBAC_ADMIN=f58310d9-a9f6-439a-9e8d-f62e7b41a168
readonly GUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

assignee=""
subscription=""
mode="Federated"
dry_run=0
aks_cluster=""
identity_rgs=()
role_scopes=()
allowed_roles=()
existing_scopes=()
node_rgs=()

while (($#)); do
  case "$1" in
    --assignee-object-id) assignee="${2:-}"; shift 2 ;;
    --subscription) subscription="${2:-}"; shift 2 ;;
    --identity-resource-group) identity_rgs+=("${2:-}"); shift 2 ;;
    --role-scope) role_scopes+=("${2:-}"); shift 2 ;;
    --allowed-role) allowed_roles+=("${2:-}"); shift 2 ;;
    --existing-identity-scope) existing_scopes+=("${2:-}"); shift 2 ;;
    --mode) mode="${2:-}"; shift 2 ;;
    --node-resource-group) node_rgs+=("${2:-}"); shift 2 ;;
    --aks-cluster-id) aks_cluster="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $assignee =~ $GUID_RE ]] || die "--assignee-object-id: \"$assignee\" is not a GUID"
[[ $subscription =~ $GUID_RE ]] || die "--subscription: \"$subscription\" is not a GUID"
((${#identity_rgs[@]})) || die "--identity-resource-group: at least one is required"
[[ $mode == Federated || $mode == Node ]] || die "--mode: \"$mode\" must be Federated or Node"
if [[ $mode == Node ]] && ((${#node_rgs[@]} == 0)); then die "--node-resource-group: required in Node mode"; fi
if ((${#role_scopes[@]})) && ((${#allowed_roles[@]} == 0)); then die "--allowed-role: at least one is required with --role-scope"; fi
if ((${#allowed_roles[@]})) && ((${#role_scopes[@]} == 0)); then die "--role-scope: at least one is required with --allowed-role"; fi

readonly sub_scope="/subscriptions/$subscription"

# The same canonical-id rules the operator applies: no dot or empty segments, escapes or whitespace.
check_scope() {
  local flag="$1" scope="$2"
  [[ $scope == /subscriptions/* || $scope == /providers/Microsoft.Management/managementGroups/* ]] || die "$flag: \"$scope\" is not an ARM scope"
  [[ $scope != */ && $scope != *//* && $scope != */./* && $scope != */../* && $scope != */. && $scope != */.. ]] || die "$flag: \"$scope\" has an empty, \".\" or \"..\" segment"
  [[ $scope != *%* && ! $scope =~ [[:space:][:cntrl:]\\] ]] || die "$flag: \"$scope\" has an escape, a backslash or whitespace"
}
for s in "${role_scopes[@]}"; do check_scope --role-scope "$s"; done
for s in "${existing_scopes[@]}"; do check_scope --existing-identity-scope "$s"; done
[[ -z $aks_cluster ]] || check_scope --aks-cluster-id "$aks_cluster"

run() {
  if ((dry_run)); then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# A role name or GUID → its definition GUID (dry run: a placeholder, no az call).
role_guid() {
  local role="$1" guid
  if [[ $role =~ $GUID_RE ]]; then
    printf '%s' "${role,,}"
    return
  fi
  if ((dry_run)); then
    printf '<guid of %s>' "$role"
    return
  fi
  guid="$(az role definition list --subscription "$subscription" --name "$role" --query '[0].name' --output tsv)"
  [[ $guid =~ $GUID_RE ]] || die "--allowed-role: no role definition named \"$role\""
  printf '%s' "${guid,,}"
}

assign() {
  local role="$1" scope="$2"
  shift 2
  run az role assignment create --assignee-object-id "$assignee" --assignee-principal-type ServicePrincipal \
    --role "$role" --scope "$scope" --description "pod-identity-operator" "$@" --output none
}

# A custom role with exactly `actions`, assignable in this subscription; created once.
custom_role() {
  local name="$1" description="$2"
  shift 2
  local actions="" a
  for a in "$@"; do actions+="${actions:+, }\"$a\""; done
  local definition="{\"Name\": \"$name\", \"IsCustom\": true, \"Description\": \"$description\", \"Actions\": [$actions], \"NotActions\": [], \"AssignableScopes\": [\"$sub_scope\"]}"
  if ((dry_run)) || [[ -z "$(az role definition list --subscription "$subscription" --custom-role-only true --name "$name" --query '[0].name' --output tsv)" ]]; then
    run az role definition create --subscription "$subscription" --role-definition "$definition" --output none
  fi
}

# Everything is checked before the first write.
for rg in "${identity_rgs[@]}"; do check_scope --identity-resource-group "$sub_scope/resourceGroups/$rg"; done
for rg in "${node_rgs[@]}"; do check_scope --node-resource-group "$sub_scope/resourceGroups/$rg"; done
condition=""
if ((${#role_scopes[@]})); then
  guids=()
  for r in "${allowed_roles[@]}"; do
    g="$(role_guid "$r")"
    case "$g" in
      "$OWNER" | "$USER_ACCESS_ADMIN" | "$RBAC_ADMIN") die "--allowed-role: \"$r\" would let pods' identities grant roles themselves; refusing" ;;
    esac
    guids+=("$g")
  done
  set_of_guids="$(IFS=,; printf '%s' "${guids[*]}")"
  set_of_guids="{${set_of_guids//,/, }}"
  # Write: only the allowed roles, only to service principals. Delete: only assignments of the allowed roles.
  condition="((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}))
 OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals $set_of_guids
  AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))
AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'}))
 OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals $set_of_guids))"
fi

# 1. Identities the operator creates, updates and deletes, with their federated credentials.
for rg in "${identity_rgs[@]}"; do assign "Managed Identity Contributor" "$sub_scope/resourceGroups/$rg"; done

# 2. Identities PodIdentities adopt: read them and manage their federated credentials, never delete them.
if ((${#existing_scopes[@]})); then
  custom_role "Pod Identity Operator Federated Credential Writer" \
    "Reads user-assigned identities and manages their federated identity credentials." \
    Microsoft.ManagedIdentity/userAssignedIdentities/read \
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/*"
  for s in "${existing_scopes[@]}"; do assign "Pod Identity Operator Federated Credential Writer" "$s"; done
fi

# 3. Finding its own role assignments (listForSubscription, filtered by principal) and resolving role names.
custom_role "Pod Identity Operator Role Assignment Reader" \
  "Reads role assignments and role definitions." \
  Microsoft.Authorization/roleAssignments/read Microsoft.Authorization/roleDefinitions/read
assign "Pod Identity Operator Role Assignment Reader" "$sub_scope"

# 4. Role assignments: RBAC Administrator, constrained to the allowed roles and to service principals.
if ((${#role_scopes[@]})); then
  for s in "${role_scopes[@]}"; do
    assign "Role Based Access Control Administrator" "$s" --condition "$condition" --condition-version 2.0
  done
fi

# 5. Node mode: put identities on the node scale sets, and be allowed to assign those identities.
if [[ $mode == Node ]]; then
  custom_role "Pod Identity Operator Scale Set Identity Writer" \
    "Reads and updates virtual machine scale sets (their user-assigned identities)." \
    Microsoft.Compute/virtualMachineScaleSets/read Microsoft.Compute/virtualMachineScaleSets/write
  for rg in "${node_rgs[@]}"; do assign "Pod Identity Operator Scale Set Identity Writer" "$sub_scope/resourceGroups/$rg"; done
  for rg in "${identity_rgs[@]}"; do assign "Managed Identity Operator" "$sub_scope/resourceGroups/$rg"; done
  for s in "${existing_scopes[@]}"; do assign "Managed Identity Operator" "$s"; done
fi

# 6. The AKS cluster, when the operator reads its OIDC issuer (and network plugin) from it.
if [[ -n $aks_cluster ]]; then
  assign "Reader" "$aks_cluster"
fi
