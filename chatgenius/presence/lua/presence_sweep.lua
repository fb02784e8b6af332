-- Expire lapsed leases and list the offlines that are due (see PresenceStore.sweep).
--
-- KEYS[1] lease expiries (cg:pl), KEYS[2] lease index (cg:px), KEYS[3] due offlines (cg:pd).
-- ARGV[1] grace ms, ARGV[2] at most this many leases and due entries per call,
-- ARGV[3] the prefix of the per-channel announced-user sets ('cg:pu:').
-- A lease lapses when its process died without leaving (SIGKILL, OOM, lost host): its user's
-- offline is due at expiry + grace if no other lease of theirs is left on the channel.
-- Returns the due '<channel>\0<user>' members; each is then claimed by presence_offline.lua,
-- which announces it exactly once however many sweepers race for it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #lapsed, 2 do
  local member, expiry = lapsed[i], tonumber(lapsed[i + 1])
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  local a = string.find(member, '\0', 1, true)
  local b = a and string.find(member, '\0', a + 1, true)
  if b then
    local channel, user = string.sub(member, 1, a - 1), string.sub(member, a + 1, b - 1)
    local prefix = string.sub(member, 1, b)
    local others = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. prefix, '(' .. string.sub(member, 1, b - 1) .. '\1', 'LIMIT', 0, 1)
    if #others == 0 and redis.call('SISMEMBER', ARGV[3] .. '{' .. channel .. '}', user) == 1 then
      redis.call('ZADD', KEYS[3], 'NX', expiry + grace, string.sub(member, 1, b - 1))
    end
  end
end
return redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
