-- Checkpoint the model: KEYS[1] the model hash; ARGV[1] version, ARGV[2] snapshot, ARGV[3] the
-- version this write follows ('' = any), ARGV[4] the version's model events not yet published
-- ('' = none; kept as field 'unpublished:<version>' until the broker acknowledged them). When the stored version is not ARGV[3], another learner
-- wrote since: nothing is written and the stored version is returned (a reply of false = written).
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[3] ~= '' and current ~= tonumber(ARGV[3]) then
  return current
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'snapshot', ARGV[2])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'unpublished:' .. ARGV[1], ARGV[4])
end
return false
