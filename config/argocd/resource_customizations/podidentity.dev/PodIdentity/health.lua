-- Argo CD health for podidentity.dev/v1alpha1 PodIdentity, read from the operator's Ready condition.
-- Runs on Argo CD's Lua 5.1 interpreter: only the base library, and `obj` as the live object.
local hs = {}

-- Ready=False reasons that resolve without anyone changing anything: the operator retries on its own.
-- Every other False reason needs a person (policy, spec, Azure permissions or quota) and is Degraded.
local resolvesOnItsOwn = {
  Reconciling = true,            -- not reconciled yet
  Pending = true,                -- scale-set assignment in flight (Node mode)
  PrincipalNotReplicated = true, -- a new identity not yet visible to Azure AD's role assignment API
  IdentityNotReady = true,       -- a later step waiting on the identity
}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator is cleaning up Azure according to spec.deletionPolicy"
  return hs
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if status == nil or status.observedGeneration == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end

local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

if ready == nil or ready.status == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

local reason = ready.reason or "Unknown"
if resolvesOnItsOwn[reason] then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = reason .. ": " .. message
return hs
