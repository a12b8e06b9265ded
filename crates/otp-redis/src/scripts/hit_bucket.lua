-- hit_bucket.lua: counts one hit in a single bucket that spans
-- destinations (per end user, per channel, one webhook update). Such a
-- bucket has its own hash tag, so it is a call of its own.
--
-- KEYS[1]       the bucket (see buckets.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       limit
-- ARGV[3]       window_ms
--
-- Returns 0 when counted, else the wait in ms (nothing counted).

return hit_buckets(0, 1, 1, tonumber(ARGV[1]), ARGV[1])
