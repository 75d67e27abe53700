-- Give back every slot a session reserved and forget the session.
-- Key names follow the schema in voicemesh/mesh/registry.py.
--
-- KEYS[1]  the session key (<prefix>sess:<session_id>)
-- ARGV[1]  key prefix         ARGV[2]  session id
--
-- Returns the number of slots freed. A lease that already ran out frees nothing, and a
-- second release of the same session returns 0: counts never go below zero.

local sess = KEYS[1]
local prefix, sid = ARGV[1], ARGV[2]
local fields = redis.call('HGETALL', sess)
local freed = 0
for i = 1, #fields, 2 do
  local field = fields[i]
  if string.sub(field, 1, 2) == 'i:' then
    local svc = string.sub(field, 3)
    freed = freed + redis.call('ZREM', prefix .. 'load:' .. svc .. ':' .. fields[i + 1], sid)
  end
end
redis.call('DEL', sess)
return freed
