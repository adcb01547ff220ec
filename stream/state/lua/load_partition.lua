-- Read what one partition's batch needs, in one round trip: the applied offset, the watermark,
-- the states of the batch's customers, and every inactivity re-evaluation due up to a time
-- (with the states of those due customers).
--
-- KEYS[1] applied offset   KEYS[2] watermark   KEYS[3] due index (zset: bucket -> earliest due)
-- KEYS[4] partition clock   KEYS[5] input topic id   KEYS[6] key census (commit_partition.lua)
-- KEYS[7] outbox   KEYS[8] learn log   KEYS[9..] state bucket keys of the requested customers
-- ARGV[1] due until (inclusive)   ARGV[2] state bucket key prefix   ARGV[3] due bucket key prefix
-- ARGV[4] per requested customer two big-endian uint16: state bucket key index, id length
-- ARGV[5] the requested customer ids, concatenated
-- The due buckets' keys are built here from the prefixes: they carry the same partition hash
-- tag as KEYS[1], so they live in the same Redis Cluster slot.
-- Returns {offset|nil, watermark|nil, {state|nil per requested customer},
--          {due customer, due ts, ...}, {state of each due customer not requested|nil, ...},
--          clock|nil, topic id|nil, lost|nil}
-- lost names the first key the census says Redis lost (a DEL, a failover to a replica that
-- missed it): the batch must not be computed on what is left.
local census = KEYS[6]
local offset = redis.call('GET', KEYS[1])
local lost = nil
local kept = redis.call('HGET', census, 'v')
if offset and not kept then
  lost = 'its key census ' .. census
elseif kept then
  if not redis.call('GET', KEYS[2]) then
    lost = 'its watermark ' .. KEYS[2]
  elseif redis.call('HGET', census, 'due') and redis.call('EXISTS', KEYS[3]) == 0 then
    lost = 'its inactivity schedule index ' .. KEYS[3]
  elseif redis.call('HGET', census, 'outbox') and redis.call('EXISTS', KEYS[7]) == 0 then
    lost = 'its outbox ' .. KEYS[7]
  elseif redis.call('HGET', census, 'clock') and redis.call('EXISTS', KEYS[4]) == 0 then
    lost = 'its clock ' .. KEYS[4]
  elseif redis.call('HGET', census, 'topic') and redis.call('EXISTS', KEYS[5]) == 0 then
    lost = 'its input topic id ' .. KEYS[5]
  else
    local learned = redis.call('HLEN', KEYS[8])
    if learned ~= tonumber(redis.call('HGET', census, 'learn') or '0') then
      lost = 'entries of its learn log ' .. KEYS[8]
    end
  end
end
-- A bucket key's entries against the census (nil: as written).
local function check(key, field, n)
  local want = tonumber(redis.call('HGET', census, field) or '0')
  if n ~= want then
    return 'entries of ' .. key .. ' (it holds ' .. n .. ', ' .. want .. ' were written)'
  end
  return nil
end
local states = {}
local wanted = {}
local seen = {}
local head, ids = ARGV[4], ARGV[5]
local at = 1
for j = 1, #head / 4 do
  local k1, k2, c1, c2 = string.byte(head, 4 * j - 3, 4 * j)
  local cut = at + c1 * 256 + c2
  local cid = string.sub(ids, at, cut - 1)
  at = cut
  local key = KEYS[k1 * 256 + k2]
  states[j] = redis.call('HGET', key, cid)
  wanted[cid] = true
  -- A key is lost whole: a state found proves its bucket is there. A customer without one is
  -- new, or its bucket was lost: its bucket's count tells (once per bucket).
  if kept and not lost and not states[j] and not seen[key] then
    seen[key] = true
    lost = check(key, string.match(key, 'cb:%d+$'), redis.call('HLEN', key))
  end
end
local due = {}
local extra = {}
local buckets = redis.call('ZRANGEBYSCORE', KEYS[3], 1, ARGV[1])
for _, b in ipairs(buckets) do
  local entries = redis.call('ZRANGEBYSCORE', ARGV[3] .. b, 1, ARGV[1], 'WITHSCORES')
  if kept and not lost and #entries == 0 then  -- the index says something is due: the bucket?
    lost = check(ARGV[3] .. b, 'db:' .. b, redis.call('ZCARD', ARGV[3] .. b))
  end
  for i = 1, #entries, 2 do
    local cid = entries[i]
    due[#due + 1] = cid
    due[#due + 1] = entries[i + 1]
    if not wanted[cid] then
      wanted[cid] = true
      local state = redis.call('HGET', ARGV[2] .. b, cid)
      if kept and not lost and not state then  -- scheduled, so it had a state
        lost = check(ARGV[2] .. b, 'cb:' .. b, redis.call('HLEN', ARGV[2] .. b))
      end
      extra[#extra + 1] = cid
      extra[#extra + 1] = state
    end
  end
end
return {offset, redis.call('GET', KEYS[2]), states, due, extra,
        redis.call('GET', KEYS[4]), redis.call('GET', KEYS[5]), lost or false}
