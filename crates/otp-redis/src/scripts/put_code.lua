-- put_code.lua: replace-on-send. Counts one hit in every bucket, stores
-- the code record (replacing any earlier one, whose pending verification
-- ends as canceled/replaced with its event) and the new verification;
-- a full bucket refuses the whole call and changes nothing.
--
-- KEYS[1]       the code record, a hash: d = digest (hex),
--               e = expires_at (unix ms), a = attempts, m = max_attempts,
--               v = verification id (hex; absent in records written
--               before verifications, whose verification side is a no-op)
-- KEYS[2]       the destination's latest verification id
-- KEYS[3]       the outbox (see vrf.lua)
-- KEYS[4]       the pending verifications (see vrf.lua)
-- KEYS[5..]     one rate bucket each (see buckets.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       digest (hex)
-- ARGV[3]       expires_at (unix ms)
-- ARGV[4]       attempts
-- ARGV[5]       max_attempts
-- ARGV[6]       the new verification's id (hex)
-- ARGV[7]       key prefix
-- ARGV[8]       the destination's tag (escaped, as inside the braces)
-- ARGV[9]       the outbox tag
-- ARGV[10]      the id index key to write (single Redis), or '' (Redis
--               Cluster: it lives in another slot; the crate writes it)
-- ARGV[11]      TTL (ms) of the latest pointer and the index
-- ARGV[12..]    limit, window_ms of each bucket, in KEYS order
-- ARGV[..]      then the new record's fields and values (see vrf.lua)
--
-- Returns 0 when stored, else the wait in ms until every full bucket has
-- room again.

local now = tonumber(ARGV[1])
local buckets = #KEYS - 4
local retry = hit_buckets(4, 11, buckets, now, ARGV[1])
if retry > 0 then
  return retry
end

local key, tag, hex = KEYS[1], ARGV[8], ARGV[6]
local ctx = vrf_ctx(ARGV[7], ARGV[9], KEYS[3], KEYS[4])
local old = redis.call('HGET', key, 'v')
if old and old ~= hex then
  vrf_finish(ctx, tag, old, 'canceled', 'replaced', now, ARGV[1])
end

redis.call('DEL', key)
redis.call('HSET', key, 'd', ARGV[2], 'e', ARGV[3], 'a', ARGV[4], 'm', ARGV[5], 'v', hex)
redis.call('PEXPIRE', key, ttl_ms(tonumber(ARGV[3]), now))

local fields = {}
for i = 12 + 2 * buckets, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local rec = vrf_key(ctx, tag, hex)
redis.call('DEL', rec)
redis.call('HSET', rec, unpack(fields))
local r = redis.call('HMGET', rec, 'x', 'rt', 's')
local expires_at, retention = tonumber(r[1]), tonumber(r[2])
if not (expires_at and retention) then
  return redis.error_reply('CORRUPT verification without expiry or retention')
end
redis.call('PEXPIRE', rec, vrf_ttl(expires_at + retention, now))
if r[3] == 'pending' then
  redis.call('ZADD', ctx.pending, r[1], hex .. tag)
end
redis.call('SET', KEYS[2], hex, 'PX', ARGV[11])
if ARGV[10] ~= '' then
  redis.call('SET', ARGV[10], tag, 'PX', ARGV[11])
end
return 0
