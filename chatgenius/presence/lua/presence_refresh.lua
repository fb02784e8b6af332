-- Extend this process' presence leases (see PresenceStore.refresh).
--
-- KEYS[1] lease expiries (cg:pl). ARGV[1] ttl ms, ARGV[2..] lease members.
-- A lease that is gone (it lapsed and a sweeper expired it, e.g. during a long Redis blip) is
-- not re-added here: it is returned, and the caller joins it again, announcing online if needed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
