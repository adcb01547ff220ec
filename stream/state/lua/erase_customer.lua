-- Compare-and-delete one customer: its state, its inactivity schedule entry, its place in the
-- partition's segment counts (every key carries the partition's hash tag).
--
-- KEYS[1] state bucket hash   KEYS[2] due bucket zset   KEYS[3] due index   KEYS[4] segment counts
-- KEYS[5] the partition's erased sample keys (the learner drops them from the model's customer
-- sample at its next version)   KEYS[6] key census (commit_partition.lua): the buckets' new counts
-- ARGV[1] the packed state the erase was computed from   ARGV[2] customer id
-- ARGV[3] segment id (-1: none yet, counted too)   ARGV[4] bucket id   ARGV[5] the customer's sample key
-- Returns 1 when erased, 0 when the state changed since it was read (nothing written),
-- -1 when the customer is already gone.
local current = redis.call('HGET', KEYS[1], ARGV[2])
if not current then
  return -1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[5])
local function remove(field)
  if redis.call('HINCRBY', KEYS[6], field, -1) <= 0 then
    redis.call('HDEL', KEYS[6], field)
  end
end
remove('cb:' .. ARGV[4])
if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  remove('db:' .. ARGV[4])
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', KEYS[3], first[2], ARGV[4])
  else
    redis.call('ZREM', KEYS[3], ARGV[4])
  end
end
if ARGV[3] ~= '' then
  local left = redis.call('HINCRBY', KEYS[4], ARGV[3], -1)
  if left <= 0 then
    redis.call('HDEL', KEYS[4], ARGV[3])
  end
end
return 1
