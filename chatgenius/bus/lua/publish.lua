-- Store and broadcast a batch of events in one atomic step (see EventBus.publish).
--
-- KEYS[1] epoch key, KEYS[2] global sequence key, then two keys per event:
--   KEYS[2+2i-1] the channel's history stream, KEYS[2+2i] its meta hash
--   (both hash-tagged with the channel, so one channel lives in one slot).
-- ARGV[1] candidate epoch (used only when none is stored: a fresh or wiped Redis),
-- ARGV[2] HISTORY_MAXLEN, ARGV[3] HISTORY_TTL, ARGV[4] meta TTL, ARGV[5] n,
-- then four values per event: durable flag, live pub/sub channel, type, body
-- (the envelope JSON after its id: ',"type":...,"ts":...}').
--
-- Live payload: '<cursor>\n<type>\n<envelope>' (cursor empty for ephemeral
-- events), so a reader builds the SSE frame without parsing JSON.
-- Returns {epoch, seq_1, ..., seq_n} with seq 0 for ephemeral events.
--
-- Optional quotas (the publish rate limit, counted in this same step): after the
-- events, ARGV[6+4n] = q, then q pairs (amount, seconds); KEYS[3+2n ..] the q
-- counter keys. Over any of them: nothing is published, and the reply is the
-- error 'QUOTA <index> <seconds until its window ends>'.
local n_events = tonumber(ARGV[5])
local q_at = 6 + 4 * n_events
local q = tonumber(ARGV[q_at]) or 0
for j = 1, q do
  local key, amount = KEYS[2 + 2 * n_events + j], tonumber(ARGV[q_at + 2 * j - 1])
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= amount then
    local left = redis.call('TTL', key)
    if left < 1 then left = 1 end
    return redis.error_reply('QUOTA ' .. j .. ' ' .. left)
  end
end
for j = 1, q do
  local key, seconds = KEYS[2 + 2 * n_events + j], tonumber(ARGV[q_at + 2 * j])
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, seconds)
  end
end
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
local maxlen = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local meta_ttl = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {epoch}
for i = 1, n do
  local a = 6 + (i - 1) * 4
  local live, etype, body = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if ARGV[a] == '1' then
    local hist, meta = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
    local seq = redis.call('INCR', KEYS[2])
    local cursor = epoch .. '-' .. seq
    local envelope = '{"id":"' .. cursor .. '"' .. body
    local excess = redis.call('XLEN', hist) + 1 - maxlen
    if excess > 0 then
      -- Record the newest seq that falls out, so a resume from before it is a reset, not a gap.
      local old = redis.call('XRANGE', hist, '-', '+', 'COUNT', excess)
      local last_old = old[#old][1]
      redis.call('HSET', meta, 'trimmed', string.match(last_old, '^(%d+)'))
      redis.call('XTRIM', hist, 'MAXLEN', maxlen - 1)
    end
    redis.call('XADD', hist, seq .. '-0', 't', etype, 'e', envelope)
    redis.call('HSET', meta, 'last', seq)
    redis.call('EXPIRE', hist, ttl)
    redis.call('EXPIRE', meta, meta_ttl)
    redis.call('PUBLISH', live, cursor .. '\n' .. etype .. '\n' .. envelope)
    out[#out + 1] = seq
  else
    redis.call('PUBLISH', live, '\n' .. etype .. '\n{' .. string.sub(body, 2))
    out[#out + 1] = 0
  end
end
return out
