-- put_code.lua: replace-on-send. Counts one hit in every bucket and
-- stores the code record, replacing any earlier one; a full bucket
-- refuses the whole call and changes nothing.
--
-- KEYS[1]       the code record, a hash: d = digest (hex),
--               e = expires_at (unix ms), a = attempts, m = max_attempts
-- KEYS[2..]     one rate bucket each (see buckets.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       digest (hex)
-- ARGV[3]       expires_at (unix ms)
-- ARGV[4]       attempts
-- ARGV[5]       max_attempts
-- ARGV[6..]     limit, window_ms of each bucket, in KEYS order
--
-- Returns 0 when stored, else the wait in ms until every full bucket has
-- room again.

local now = tonumber(ARGV[1])
local retry = hit_buckets(1, 5, #KEYS - 1, now, ARGV[1])
if retry > 0 then
  return retry
end

local key = KEYS[1]
redis.call('DEL', key)
redis.call('HSET', key, 'd', ARGV[2], 'e', ARGV[3], 'a', ARGV[4], 'm', ARGV[5])
redis.call('PEXPIRE', key, ttl_ms(tonumber(ARGV[3]), now))
return 0
