-- Grant one connection lease if the owner holds fewer than the limit (see SharedState.acquire_lease).
--
-- KEYS[1] the owner's lease set (ZSET: member = lease id, score = expiry in ms of Redis' clock).
-- ARGV[1] lease id, ARGV[2] limit, ARGV[3] ttl in ms.
-- Expired leases are dropped first, so a SIGKILLed worker's slots come back by themselves.
-- Returns {granted (1|0), live leases held after the call, ms until the oldest expires (0 if granted)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or held < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, redis.call('ZCARD', KEYS[1]), 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, held, tonumber(oldest[2]) - now}
