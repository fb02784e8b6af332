-- Extend one owner's connection leases to expire ttl ms from now on Redis' clock
-- (see SharedState.refresh_leases; callers pipeline one call per owner).
--
-- KEYS[1] the owner's lease set; ARGV[1] ttl in ms; ARGV[2..] lease ids.
-- A lease that lapsed (e.g. during a Redis blip) is added back: its stream is still open.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
