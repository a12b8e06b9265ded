-- hit_bucket.lua: counts one hit in each of the buckets in KEYS, all or
-- nothing: a bucket that spans destinations (per end user, per channel,
-- one webhook update), which has its own hash tag and so is a call of its
-- own; or, on a Redis Cluster, a destination's own buckets (one slot)
-- before its code is stored.
--
-- KEYS[1..n]    the buckets (see buckets.lua), all in one slot
-- ARGV[1]       now (unix ms)
-- ARGV[2..]     limit, window_ms of each bucket, in KEYS order
--
-- Returns 0 when counted, else the longest wait in ms (nothing counted).

return hit_buckets(0, 1, #KEYS, tonumber(ARGV[1]), ARGV[1])
