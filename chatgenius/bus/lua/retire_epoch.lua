-- Replace the epoch only if it is still the one the caller saw (compare-and-set), so
-- several workers noticing the same lost tail retire it once, not once each.
-- KEYS[1] epoch key; ARGV[1] the epoch seen; ARGV[2] the new epoch. Returns the epoch now stored.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return current
