-- Checkpoint the model: KEYS[1] the model hash; ARGV[1] version, ARGV[2] snapshot, ARGV[3] the
-- version this write follows ('' = any), ARGV[4] the version's model events not yet published
-- ('' = none; kept as field 'unpublished:<version>' until the broker acknowledged them), ARGV[5]
-- the version as followers assign with it and ARGV[6] the merge position it was built after
-- ('' = none; fields 'v:<version>' and 'after:<version>', the version history a follower of a
-- merging learner reads, docs/decisions/0032). When the stored version is not ARGV[3], another learner
-- wrote since: nothing is written and the stored version is returned (a reply of false = written).
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[3] ~= '' and current ~= tonumber(ARGV[3]) then
  return current
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'snapshot', ARGV[2])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'unpublished:' .. ARGV[1], ARGV[4])
end
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'v:' .. ARGV[1], ARGV[5], 'after:' .. ARGV[1], ARGV[6])
end
return false
