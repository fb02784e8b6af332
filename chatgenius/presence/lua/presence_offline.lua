-- Claim one due offline and announce it, atomically (see PresenceStore.sweep).
--
-- KEYS[1] due offlines (cg:pd), KEYS[2] lease index (cg:px), KEYS[3] the channel's announced
-- users (cg:pu:{channel}), KEYS[4..] publish.lua's KEYS.
-- ARGV[1] '<channel>\0<user>', ARGV[2] user, ARGV[3], ARGV[4] the lex range of the user's
-- leases on the channel, ARGV[5..] publish.lua's ARGV for the `offline` event.
-- The ZREM is the claim: of several sweepers racing for one entry, one sees it; a join since
-- the entry was listed removed it (or left a lease), so nothing is announced then.
-- Returns 1 if `offline` was published, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > now then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if #redis.call('ZRANGEBYLEX', KEYS[2], ARGV[3], ARGV[4], 'LIMIT', 0, 1) > 0 then
  return 0
end
if redis.call('SREM', KEYS[3], ARGV[2]) == 0 then
  return 0
end
local failed = publish({unpack(KEYS, 4)}, {unpack(ARGV, 5)})
if type(failed) == 'table' and failed.err then  -- publish.lua refused (its writer fence): still announced
  redis.call('SADD', KEYS[3], ARGV[2])
  return failed
end
return 1
