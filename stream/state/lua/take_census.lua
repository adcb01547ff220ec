-- A partition's key census (commit_partition.lua keeps it): checked against every key of the
-- partition, or, for a namespace written by a release that kept none, counted now.
--
-- KEYS[1] applied offset   KEYS[2] key census   KEYS[3] due index   KEYS[4] outbox   KEYS[5] clock
-- KEYS[6] input topic id   KEYS[7] learn log   KEYS[8] watermark
-- ARGV[1] state bucket key prefix   ARGV[2] due bucket key prefix   ARGV[3] buckets per partition
-- ARGV[4] "1" when the namespace has kept censuses (a partition with state and none lost it)
-- ARGV[5] "check": never count (a read-only look)
-- The bucket keys are built here: they carry KEYS[1]'s hash tag (one Redis Cluster slot).
-- Returns {1} when the census agrees with every key, {0, what was lost}, {2} when counted now,
-- {3} when there is none to check.
local census = KEYS[2]
local offset = redis.call('GET', KEYS[1])
local marks = {due = 3, outbox = 4, clock = 5, topic = 6}
if redis.call('HGET', census, 'v') then
  if not redis.call('GET', KEYS[8]) then
    return {0, 'its watermark ' .. KEYS[8]}
  end
  for mark, k in pairs(marks) do
    if redis.call('HGET', census, mark) and redis.call('EXISTS', KEYS[k]) == 0 then
      return {0, 'its ' .. mark .. ' key ' .. KEYS[k]}
    end
  end
  local counted = {learn = redis.call('HLEN', KEYS[7])}
  for b = 0, tonumber(ARGV[3]) - 1 do
    counted['cb:' .. b] = redis.call('HLEN', ARGV[1] .. b)
    counted['db:' .. b] = redis.call('ZCARD', ARGV[2] .. b)
  end
  local fields = redis.call('HGETALL', census)
  for i = 1, #fields, 2 do
    if counted[fields[i]] == nil and marks[fields[i]] == nil and fields[i] ~= 'v' then
      counted[fields[i]] = 0  -- a count of a bucket beyond the partition's: never written
    end
  end
  for field, n in pairs(counted) do
    local want = tonumber(redis.call('HGET', census, field) or '0')
    if n ~= want then
      local key = field == 'learn' and KEYS[7] or string.gsub(ARGV[1], 'cb:$', '') .. field
      return {0, 'entries of ' .. key .. ' (it holds ' .. n .. ', ' .. want .. ' were written)'}
    end
  end
  return {1}
end
if offset and ARGV[4] == '1' then
  return {0, 'its key census ' .. census}
end
if ARGV[5] == 'check' then
  return {3}
end
redis.call('DEL', census)
for b = 0, tonumber(ARGV[3]) - 1 do
  local n = redis.call('HLEN', ARGV[1] .. b)
  if n > 0 then
    redis.call('HSET', census, 'cb:' .. b, n)
  end
  local z = redis.call('ZCARD', ARGV[2] .. b)
  if z > 0 then
    redis.call('HSET', census, 'db:' .. b, z)
  end
end
local learned = redis.call('HLEN', KEYS[7])
if learned > 0 then
  redis.call('HSET', census, 'learn', learned)
end
-- A partition without an applied offset gets its mark with its first write (it has no
-- watermark to check before that).
if offset then
  redis.call('HSET', census, 'v', 1)
  for mark, k in pairs(marks) do
    if redis.call('EXISTS', KEYS[k]) == 1 then
      redis.call('HSET', census, mark, 1)
    end
  end
end
return {2}
