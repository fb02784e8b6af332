-- Store and broadcast a batch of events in one atomic step (see EventBus.publish).
--
-- KEYS[1] epoch key, KEYS[2] global sequence key, then two keys per event:
--   KEYS[2+2i-1] the channel's history stream, KEYS[2+2i] its meta hash
--   (both hash-tagged with the channel, so one channel lives in one slot).
-- ARGV[1] candidate epoch (used when none is stored, a fresh or wiped Redis, and at a writer fence),
-- ARGV[2] HISTORY_MAXLEN, ARGV[3] HISTORY_TTL, ARGV[4] meta TTL, ARGV[5] n,
-- then five values per event: durable flag, live pub/sub channel, type, and the
-- envelope's head and tail: Python makes the envelope JSON (events.envelope_parts),
-- this script only splices in the cursor it assigns: head .. cursor .. tail
-- (an ephemeral event has no cursor: head .. tail).
--
-- Live payload: '<cursor>\n<type>\n<envelope>' (cursor empty for ephemeral
-- events), the parts sse.frame_from_live makes the SSE frame of without parsing JSON.
-- Returns {epoch, seq_1, ..., seq_n} with seq 0 for ephemeral events.
--
-- Optional quotas (the publish rate limit, counted in this same step): after the
-- events, ARGV[6+5n] = q, then q pairs (amount, seconds); KEYS[3+2n ..] the q
-- counter keys. Over any of them: nothing is published, and the reply is the
-- error 'QUOTA <index> <seconds until its window ends>'.
--
-- Optional idempotency (EventBus.publish_once), after the quotas (q = 0 when none):
-- ARGV[i] = window seconds with i = 7 + 5n + 2q, ARGV[i+1] the request's fingerprint
-- ('' when it has no key), ARGV[i+1+k] event k's fingerprint ('' when it has no key of
-- its own); KEYS after the quota keys: the request's key (when it has one), then one
-- per keyed event in order. A key's value is '<fingerprint>\n<answer>': the request's
-- ids joined by ',' (ephemeral: empty), an event's cursor. Checked before the quotas
-- and before anything is written: a seen request key returns {'=', its ids}; a seen
-- event key puts its stored cursor (a string, unlike fresh seqs) in the event's place;
-- a fingerprint mismatch is the error 'IDEMPOTENCY <0 for the request, else k>'.
-- Absent (presence's embedded calls, publishes without keys), it costs one lookup.
-- Who writes: the Redis process (run_id) in its current role (master_replid: a new one at every
-- promotion, so a master demoted, resynced from another and promoted again is a new writer).
-- Read before any write: without INFO (an ACL without it) nothing is written, and the error says
-- why. Two calls: Redis 6 takes one section per INFO.
local server, replication = redis.pcall('INFO', 'server'), redis.pcall('INFO', 'replication')
if type(server) ~= 'string' or type(replication) ~= 'string' then
  local refused = type(server) == 'table' and server or replication
  return redis.error_reply('FENCE the Redis user must be allowed INFO: ' .. tostring(refused.err))
end
local run_at, replid_at = string.find(server, 'run_id:', 1, true), string.find(replication, 'master_replid:', 1, true)
if not run_at or not replid_at then  -- plain finds: half what pattern matches cost here
  return redis.error_reply('FENCE INFO lacks run_id or master_replid')
end
local writer = string.sub(server, run_at + 7, run_at + 46) .. ' ' .. string.sub(replication, replid_at + 14, replid_at + 53)
local n_events = tonumber(ARGV[5])
local q_at = 6 + 5 * n_events
local q = tonumber(ARGV[q_at]) or 0
local i_at = q_at + 1 + 2 * q
local window = tonumber(ARGV[i_at])
local seen, owned, request_key = {}, {}, nil
if window then
  local k = 2 + 2 * n_events + q
  local fp = ARGV[i_at + 1]
  if fp ~= '' then
    k = k + 1
    request_key = KEYS[k]
    local stored = redis.call('GET', request_key)
    if stored then
      if string.sub(stored, 1, #fp + 1) ~= fp .. '\n' then
        return redis.error_reply('IDEMPOTENCY 0')
      end
      return {'=', string.sub(stored, #fp + 2)}
    end
  end
  for i = 1, n_events do
    local efp = ARGV[i_at + 1 + i]
    if efp ~= '' then
      k = k + 1
      local stored = redis.call('GET', KEYS[k])
      if not stored then
        owned[i] = KEYS[k]
      elseif string.sub(stored, 1, #efp + 1) == efp .. '\n' then
        seen[i] = string.sub(stored, #efp + 2)
      else
        return redis.error_reply('IDEMPOTENCY ' .. i)
      end
    end
  end
end
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
-- The writer fence. A Redis process that did not write the history it holds (a replica
-- promoted by a failover, a restart from disk, a migrated slot) may lack a tail that the
-- previous writer handed out and streams delivered; the seqs after what it holds would be
-- issued a second time, to other events. So the first call of a new writer starts a new
-- epoch that continues the old one up to the seq it holds: '<parent epoch> <fence>' in the
-- lineage hash. A cursor of the parent at or below the fence resumes exactly; one above it
-- saw lost events and is reset (bus/redis_history.py, ancestors). The hash keeps the chain
-- of the current epoch only (32 links at most), and the new epoch's name is none of its
-- epochs (a candidate that is one gets another last character). Both keys share KEYS[1]'s
-- slot (its hash tag). A call with no events (n = 0) does only this: the bus' feed runs it
-- on every connect, before it serves streams.
local writer_key, lineage_key = KEYS[1] .. ':writer', KEYS[1] .. ':lineage'
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', writer_key, writer)
  epoch = ARGV[1]
elseif redis.call('GET', writer_key) ~= writer then
  local flat = redis.call('HGETALL', lineage_key)
  local links = {}
  for i = 1, #flat, 2 do
    links[flat[i]] = flat[i + 1]
  end
  local chain, taken, e = {}, {[epoch] = true}, epoch
  while links[e] and #chain < 62 do
    local parent = string.match(links[e], '^(%S+) %d+$')
    if not parent or taken[parent] then  -- a link that does not parse ends the chain there
      break
    end
    chain[#chain + 1] = e
    chain[#chain + 1] = links[e]
    taken[parent] = true
    e = parent
  end
  local fresh, alphabet, k = ARGV[1], '0123456789abcdefghijklmnopqrstuvwxyz', 0
  while taken[fresh] and k < 36 do
    k = k + 1
    fresh = string.sub(ARGV[1], 1, -2) .. string.sub(alphabet, k, k)
  end
  redis.call('DEL', lineage_key)
  redis.call('HSET', lineage_key, fresh, epoch .. ' ' .. (redis.call('GET', KEYS[2]) or '0'), unpack(chain))
  redis.call('SET', KEYS[1], fresh)
  redis.call('SET', writer_key, writer)
  epoch = fresh
end
local maxlen = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local meta_ttl = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {epoch}
for i = 1, n do
  local a = 6 + (i - 1) * 5
  local live, etype, head, tail = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if seen[i] then
    out[#out + 1] = seen[i]
  elseif ARGV[a] == '1' then
    local hist, meta = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
    local seq = redis.call('INCR', KEYS[2])
    local cursor = epoch .. '-' .. seq
    local envelope = head .. cursor .. tail
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
    if owned[i] then
      redis.call('SET', owned[i], ARGV[i_at + 1 + i] .. '\n' .. cursor, 'EX', window)
    end
  else
    redis.call('PUBLISH', live, '\n' .. etype .. '\n' .. head .. tail)
    out[#out + 1] = 0
    if owned[i] then
      redis.call('SET', owned[i], ARGV[i_at + 1 + i] .. '\n', 'EX', window)
    end
  end
end
if request_key then
  local ids = {}
  for i = 2, #out do
    local v = out[i]
    if type(v) ~= 'number' then
      ids[i - 1] = v
    elseif v == 0 then
      ids[i - 1] = ''
    else
      ids[i - 1] = epoch .. '-' .. v
    end
  end
  redis.call('SET', request_key, ARGV[i_at + 1] .. '\n' .. table.concat(ids, ','), 'EX', window)
end
return out
