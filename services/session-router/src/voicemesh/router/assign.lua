-- Assign a session to one instance of each requested service, atomically, all or none.
-- Key names follow the schema in voicemesh/mesh/registry.py (built here from the same prefix).
-- The rule (documented in voicemesh/router/choice.py): among alive, non-draining instances
-- with active < capacity, prefer the caller's region ("" = any), then any other region;
-- lowest active/capacity first; ties to the smallest instance id.
--
-- KEYS[1]  the session key (<prefix>sess:<session_id>)
-- ARGV[1]  key prefix         ARGV[2]  session id     ARGV[3]  caller's region
-- ARGV[4]  now (unix ms)      ARGV[5]  lease deadline (unix ms)   ARGV[6]  lease (ms)
-- ARGV[7..] service names (distinct)
--
-- Returns {1, new, svc, instance_id, address, region, ...} on success, where `new` counts
-- reservations made by this call (0 when the session already held them all: the call is
-- idempotent and only pushes the lease forward). An existing reservation is kept while its
-- instance is alive, even if draining; one whose instance died is replaced.
-- Returns {0, svc, eligible} when `svc` has no instance with room; nothing is reserved then.
-- `eligible` counts that service's alive, non-draining instances (all of them full).

local sess = KEYS[1]
local prefix, sid, region = ARGV[1], ARGV[2], ARGV[3]
local now, deadline, lease = ARGV[4], ARGV[5], ARGV[6]

local function pick(svc)
  local members = prefix .. 'svc:' .. svc
  local best_id, best_addr, best_region, best_tier, best_active, best_cap
  local eligible = 0
  for _, id in ipairs(redis.call('SMEMBERS', members)) do
    local f = redis.call('HMGET', prefix .. 'inst:' .. svc .. ':' .. id,
      'address', 'region', 'capacity', 'draining')
    local load = prefix .. 'load:' .. svc .. ':' .. id
    if not f[1] then
      -- the record expired (silent for retain_s): forget the instance
      redis.call('SREM', members, id)
      redis.call('DEL', load)
    elseif f[4] ~= '1' and redis.call('EXISTS', prefix .. 'alive:' .. svc .. ':' .. id) == 1 then
      eligible = eligible + 1
      local active = redis.call('ZCOUNT', load, '(' .. now, '+inf')  -- unexpired leases
      local cap = tonumber(f[3]) or 0
      if active < cap then
        local tier = 1
        if region == '' or f[2] == region then tier = 0 end
        local better = best_id == nil or tier < best_tier
        if not better and tier == best_tier then
          local l, r = active * best_cap, best_active * cap
          better = l < r or (l == r and id < best_id)
        end
        if better then
          best_id, best_addr, best_region = id, f[1], f[2]
          best_tier, best_active, best_cap = tier, active, cap
        end
      end
    end
  end
  if best_id == nil then return nil, eligible end
  return {svc, best_id, best_addr, best_region}, eligible
end

-- Phase 1: decide everything, reserve nothing.
local picks, fresh = {}, {}
for i = 7, #ARGV do
  local svc = ARGV[i]
  local held = redis.call('HMGET', sess, 'i:' .. svc, 'a:' .. svc, 'r:' .. svc)
  if held[1] and redis.call('EXISTS', prefix .. 'alive:' .. svc .. ':' .. held[1]) == 1 then
    picks[#picks + 1] = {svc, held[1], held[2], held[3]}
    fresh[#picks] = false
  else
    local p, eligible = pick(svc)
    if p == nil then return {0, svc, eligible} end
    picks[#picks + 1] = p
    fresh[#picks] = held[1] or true
  end
end

-- Phase 2: reserve (or refresh) every slot and record the session.
local out, new = {1, 0}, 0
for n, p in ipairs(picks) do
  local svc, id = p[1], p[2]
  local load = prefix .. 'load:' .. svc .. ':' .. id
  if fresh[n] then
    new = new + 1
    if fresh[n] ~= true then
      -- replace a reservation on an instance that died
      redis.call('ZREM', prefix .. 'load:' .. svc .. ':' .. fresh[n], sid)
    end
    redis.call('HSET', sess, 'i:' .. svc, id, 'a:' .. svc, p[3], 'r:' .. svc, p[4])
  end
  redis.call('ZREMRANGEBYSCORE', load, '-inf', now)  -- drop leases that ran out
  redis.call('ZADD', load, deadline, sid)
  redis.call('PEXPIRE', load, lease)
  out[#out + 1] = svc
  out[#out + 1] = id
  out[#out + 1] = p[3]
  out[#out + 1] = p[4]
end
out[2] = new
redis.call('PEXPIRE', sess, lease)
return out
