-- A stream of `user` left a channel (see PresenceStore.leave).
--
-- KEYS[1] lease expiries (cg:pl), KEYS[2] lease index (cg:px), KEYS[3] due offlines (cg:pd),
-- KEYS[4] the channel's announced users (cg:pu:{channel}).
-- ARGV[1] lease member, ARGV[2] user, ARGV[3] '<channel>\0<user>', ARGV[4] grace ms,
-- ARGV[5], ARGV[6] the lex range of the user's leases on the channel ('[<ch>\0<user>\0', '(<ch>\0<user>\1').
-- The user's last lease gone: the offline is due `grace` ms from now (NX: an earlier due time stays).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if #redis.call('ZRANGEBYLEX', KEYS[2], ARGV[5], ARGV[6], 'LIMIT', 0, 1) == 0
    and redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[3], 'NX', now + tonumber(ARGV[4]), ARGV[3])
  return 1
end
return 0
