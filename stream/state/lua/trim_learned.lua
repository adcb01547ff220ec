-- Forget learn-log entries a model checkpoint has, and take them off the key census.
-- KEYS[1] learn log   KEYS[2] key census   ARGV the entry names
local removed = 0
for i = 1, #ARGV, 500 do
  removed = removed + redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
if removed > 0 and redis.call('HINCRBY', KEYS[2], 'learn', -removed) <= 0 then
  redis.call('HDEL', KEYS[2], 'learn')
end
return removed
