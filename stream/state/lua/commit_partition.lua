-- Atomically write one partition's batch: customer states, inactivity schedule, segment counts,
-- watermark, the partition clock and the new applied offset, but only if the applied offset is
-- still the one the batch was computed from (compare-and-set), and the input topic is the one the
-- partition's state was built from (a recreated topic has another id and starts its offsets over).
-- A replayed or concurrent batch changes nothing.
-- Every key carries the partition's hash tag (one Redis Cluster slot) and is declared in KEYS.
--
-- KEYS[1] applied offset   KEYS[2] watermark   KEYS[3] due index (zset: bucket -> earliest due)
-- KEYS[4] segment counts hash   KEYS[5] partition clock   KEYS[6] input topic id
-- KEYS[7] outbox hash (entry number -> the batch's encoded outputs; field "n" numbers them)
-- KEYS[8] learn log hash (entry name -> a learner's rows of the batch)
-- KEYS[9] key census (hash: "cb:<b>" / "db:<b>" -> entries of that bucket, "learn" -> learn log
-- entries; "v", "due", "outbox", "clock", "topic": kept since the partition's first write / since
-- that key exists; load_partition.lua compares them with what Redis holds)
-- KEYS[10..] bucket keys (state hashes and due zsets)
-- ARGV[1] expected applied offset ("" = none yet)   ARGV[2] new applied offset   ARGV[3] watermark
-- ARGV[4] partition clock ("=" = unchanged)   ARGV[5] input topic id ("" = not checked, e.g. files)
-- ARGV[6] n   ARGV[7] n headers of three big-endian uint16: state bucket key index, customer id
-- length, packed state length (0 = delete)   ARGV[8] the n customer ids and states, concatenated
-- ARGV[9] m, and m quadruples: due bucket key index, bucket id, customer id, due ts ("0" = remove)
-- then k, and k pairs: segment id, delta; then the batch's encoded outputs ("" = none), then the
-- learner's rows' entry name and bytes ("" = none)
-- Returns {1, new offset, outbox entry number or 0}, {0, current offset} (offset conflict) or
-- {2, stored topic id}.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return {0, current}
end
local topic = redis.call('GET', KEYS[6])
if ARGV[5] ~= '' then
  if topic and topic ~= ARGV[5] then
    return {2, topic}
  end
  if not topic then
    redis.call('SET', KEYS[6], ARGV[5])
  end
end
local census = KEYS[9]
-- The census moves by what this write added and removed (not set to what the key now holds: a
-- key lost before this write stays short of its count, for the next load to find).
local function add(field, d)
  if d ~= 0 and redis.call('HINCRBY', census, field, d) <= 0 then
    redis.call('HDEL', census, field)
  end
end
if current == '' then
  redis.call('HSET', census, 'v', 1)
end
local n = tonumber(ARGV[6])
local head, body = ARGV[7], ARGV[8]
local at = 1
local delta = {}
for j = 0, n - 1 do
  local k1, k2, c1, c2, s1, s2 = string.byte(head, 6 * j + 1, 6 * j + 6)
  local key = KEYS[k1 * 256 + k2]
  local cut = at + c1 * 256 + c2
  local cid = string.sub(body, at, cut - 1)
  at = cut + s1 * 256 + s2
  local d
  if at == cut then
    d = -redis.call('HDEL', key, cid)
  else
    d = redis.call('HSET', key, cid, string.sub(body, cut, at - 1))
  end
  delta[key] = (delta[key] or 0) + d
end
for key, d in pairs(delta) do
  add(string.match(key, 'cb:%d+$'), d)
end
local pos = 9
local m = tonumber(ARGV[pos])
pos = pos + 1
local touched = {}
local due_delta = {}
for _ = 1, m do
  local ki = tonumber(ARGV[pos])
  local member = ARGV[pos + 2]
  local score = ARGV[pos + 3]
  local d
  if score == '0' then
    d = -redis.call('ZREM', KEYS[ki], member)
  else
    d = redis.call('ZADD', KEYS[ki], score, member)
  end
  touched[ki] = ARGV[pos + 1]
  due_delta[ki] = (due_delta[ki] or 0) + d
  pos = pos + 4
end
-- The due index holds each due bucket's earliest entry (ZRANGE 0 0 of a small listpack zset).
-- One member of it never comes due (score inf) and is longer than zset-max-listpack-value (64 by
-- default): the index stays a skiplist, O(log n) per update, where a listpack of a few hundred
-- buckets moves the whole set on each (~6 us at 340 buckets, ~12 us at 1000, against 0.5-1 us).
-- The bucket zsets stay small listpacks. (With zset-max-listpack-value raised above 256 the index
-- stays a listpack: slower, still correct.) The member keeps the index key alive when every
-- bucket has left it; loads ask for finite times and never see it.
if next(touched) ~= nil then
  redis.call('ZADD', KEYS[3], 'NX', 'inf', 'never-due:' .. string.rep('-', 246))
  redis.call('HSET', census, 'due', 1)
end
for ki, bucket in pairs(touched) do
  add('db:' .. bucket, due_delta[ki])
  local first = redis.call('ZRANGE', KEYS[ki], 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', KEYS[3], first[2], bucket)
  else
    redis.call('ZREM', KEYS[3], bucket)
  end
end
local k = tonumber(ARGV[pos])
for j = 1, k do
  local seg = ARGV[pos + 2 * j - 1]
  local left = redis.call('HINCRBY', KEYS[4], seg, tonumber(ARGV[pos + 2 * j]))
  if left <= 0 then
    redis.call('HDEL', KEYS[4], seg)
  end
end
-- The outputs go in with the state they describe: whatever is published is what Redis holds.
local entry = 0
local outputs = ARGV[pos + 2 * k + 1]
if outputs ~= '' then
  entry = redis.call('HINCRBY', KEYS[7], 'n', 1)
  redis.call('HSET', KEYS[7], entry, outputs)
  redis.call('HSET', census, 'outbox', 1)  -- its counter field "n" keeps it from now on
end
local learned = ARGV[pos + 2 * k + 3]
if learned ~= '' then
  add('learn', redis.call('HSET', KEYS[8], ARGV[pos + 2 * k + 2], learned))
end
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '=' then
  redis.call('SET', KEYS[5], ARGV[4])
  redis.call('HSET', census, 'clock', 1)
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HSET', census, 'topic', 1)
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2], entry}
