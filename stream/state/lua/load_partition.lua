-- Read what one partition's batch needs, in one round trip: the applied offset, the watermark,
-- the states of the batch's customers, and every inactivity re-evaluation due up to a time
-- (with the states of those due customers).
--
-- KEYS[1] applied offset   KEYS[2] watermark   KEYS[3] due index (zset: bucket -> earliest due)
-- KEYS[4] partition clock   KEYS[5] input topic id   KEYS[6..] state bucket keys of the requested
-- customers
-- ARGV[1] due until (inclusive)   ARGV[2] state bucket key prefix   ARGV[3] due bucket key prefix
-- ARGV[4] per requested customer two big-endian uint16: state bucket key index, id length
-- ARGV[5] the requested customer ids, concatenated
-- The due buckets' keys are built here from the prefixes: they carry the same partition hash
-- tag as KEYS[1], so they live in the same Redis Cluster slot.
-- Returns {offset|nil, watermark|nil, {state|nil per requested customer},
--          {due customer, due ts, ...}, {state of each due customer not requested|nil, ...},
--          clock|nil, topic id|nil}
local states = {}
local wanted = {}
local head, ids = ARGV[4], ARGV[5]
local at = 1
for j = 1, #head / 4 do
  local k1, k2, c1, c2 = string.byte(head, 4 * j - 3, 4 * j)
  local cut = at + c1 * 256 + c2
  local cid = string.sub(ids, at, cut - 1)
  at = cut
  states[j] = redis.call('HGET', KEYS[k1 * 256 + k2], cid)
  wanted[cid] = true
end
local due = {}
local extra = {}
local buckets = redis.call('ZRANGEBYSCORE', KEYS[3], 1, ARGV[1])
for _, b in ipairs(buckets) do
  local entries = redis.call('ZRANGEBYSCORE', ARGV[3] .. b, 1, ARGV[1], 'WITHSCORES')
  for i = 1, #entries, 2 do
    local cid = entries[i]
    due[#due + 1] = cid
    due[#due + 1] = entries[i + 1]
    if not wanted[cid] then
      wanted[cid] = true
      extra[#extra + 1] = cid
      extra[#extra + 1] = redis.call('HGET', ARGV[2] .. b, cid)
    end
  end
end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), states, due, extra,
        redis.call('GET', KEYS[4]), redis.call('GET', KEYS[5])}
