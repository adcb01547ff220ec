-- Atomically write one partition's batch: customer states, inactivity schedule, segment counts,
-- watermark and the new applied offset, but only if the applied offset is still the one the
-- batch was computed from (compare-and-set). A replayed or concurrent batch changes nothing.
--
-- KEYS[1] applied offset   KEYS[2] watermark   KEYS[3] due zset   KEYS[4] segment counts hash
-- KEYS[5..4+n] customer state keys
-- ARGV[1] expected applied offset ("" = none yet)   ARGV[2] new applied offset
-- ARGV[3] watermark   ARGV[4] n (states)   ARGV[5..4+n] packed states ("" = delete)
-- then ARGV[5+n] m (due entries) and m pairs: member, score ("0" = remove)
-- then k (segment count deltas) and k pairs: segment id, delta
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return {0, current}
end
local n = tonumber(ARGV[4])
for i = 1, n do
  local blob = ARGV[4 + i]
  if blob == '' then
    redis.call('DEL', KEYS[4 + i])
  else
    redis.call('SET', KEYS[4 + i], blob)
  end
end
local pos = 5 + n
local m = tonumber(ARGV[pos])
for j = 1, m do
  local member = ARGV[pos + 2 * j - 1]
  local score = ARGV[pos + 2 * j]
  if score == '0' then
    redis.call('ZREM', KEYS[3], member)
  else
    redis.call('ZADD', KEYS[3], score, member)
  end
end
pos = pos + 2 * m + 1
local k = tonumber(ARGV[pos])
for j = 1, k do
  local seg = ARGV[pos + 2 * j - 1]
  local left = redis.call('HINCRBY', KEYS[4], seg, tonumber(ARGV[pos + 2 * j]))
  if left <= 0 then
    redis.call('HDEL', KEYS[4], seg)
  end
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
