-- A follower's rows of a batch into its partition's learn log, before the batch is applied: the
-- learner learns them at their place in its merge, and the follower waits for that to assign
-- them with the version in force there (docs/decisions/0032). The state, outputs and offsets
-- follow in commit_partition.lua.
--
-- KEYS[1] applied offset   KEYS[2] learn log hash   KEYS[3] key census   KEYS[4] logged ("<last
-- offset> <clock>": the partition's rows up to that offset are in the learn log, and its next
-- rows' clocks are at least that one)
-- ARGV[1] the applied offset the batch was computed from ("" = none yet)   ARGV[2] the entry's
-- first row's position, zero-padded as the names   ARGV[3] the entry's name (its last row's
-- position; "" = no rows)   ARGV[4] the entry   ARGV[5] the batch's last offset   ARGV[6] the
-- clock of the partition's next row (of a record read and held back), else of its last
-- Returns {0, current offset} when another instance applied past the batch (a zombie writes
-- nothing), {1} when written (or every row was logged already: a redo after a crash), {2, last
-- name logged} when some of its rows were logged already (the caller sends the rest).
local current = redis.call('GET', KEYS[1]) or ''
if current ~= '' and (ARGV[1] == '' or tonumber(current) > tonumber(ARGV[1])) then
  return {0, current}
end
if ARGV[3] ~= '' then
  local last = ''
  for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
    if name > last then
      last = name
    end
  end
  if last >= ARGV[2] and last < ARGV[3] then
    return {2, last}
  end
  if last < ARGV[2] then
    if redis.call('HSET', KEYS[2], ARGV[3], ARGV[4]) == 1 then
      if redis.call('HINCRBY', KEYS[3], 'learn', 1) <= 0 then
        redis.call('HDEL', KEYS[3], 'learn')
      end
    end
  end
end
local offset, clock = string.match(redis.call('GET', KEYS[4]) or '-1 0', '^(%-?%d+) (%-?%d+)$')
offset = math.max(tonumber(offset or '-1'), tonumber(ARGV[5]))
clock = math.max(tonumber(clock or '0'), tonumber(ARGV[6]))
redis.call('SET', KEYS[4], string.format('%d %d', offset, clock))
return {1}
