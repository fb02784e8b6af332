-- A stream of `user` joined a channel (see PresenceStore.join).
--
-- KEYS[1] lease expiries (ZSET cg:pl: member '<channel>\0<user>\0<connection>', score = expiry ms
--         on Redis' clock), KEYS[2] lease index (ZSET cg:px: same members, score 0, for lex ranges),
-- KEYS[3] due offlines (ZSET cg:pd: member '<channel>\0<user>', score = when to announce, ms),
-- KEYS[4] the channel's announced users (SET cg:pu:{channel}), KEYS[5..] publish.lua's KEYS.
-- ARGV[1] lease member, ARGV[2] user, ARGV[3] '<channel>\0<user>', ARGV[4] lease ttl ms,
-- ARGV[5..] publish.lua's ARGV for the `online` event.
-- A join cancels a pending offline (a reconnect within the grace announces nothing); the user is
-- announced online only if not already, in the same atomic step as the state change, so the
-- order of presence events in history is the order of the state changes.
-- Returns 1 if `online` was published, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[3])
if redis.call('SADD', KEYS[4], ARGV[2]) == 1 then
  local failed = publish({unpack(KEYS, 5)}, {unpack(ARGV, 5)})
  if type(failed) == 'table' and failed.err then  -- publish.lua refused (its writer fence): not announced
    redis.call('SREM', KEYS[4], ARGV[2])
    return failed
  end
  return 1
end
return 0
