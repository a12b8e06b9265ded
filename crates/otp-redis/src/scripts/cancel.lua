-- cancel.lua: cancels a pending verification: its code dies and it ends
-- as canceled/api with its event; one already past its expiry ends as
-- expired instead.
--
-- KEYS[1]       the verification record (see vrf.lua)
-- KEYS[2]       the destination's code record
-- KEYS[3]       the outbox
-- KEYS[4]       the pending verifications
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the id (hex)
-- ARGV[3]       key prefix
-- ARGV[4]       the destination's tag
-- ARGV[5]       the outbox tag
--
-- Returns {status, record fields}: {0, {}} unknown, {1, fields} canceled
-- now, {2, fields} had ended already (or expired just now).

local rec, hex, tag = KEYS[1], ARGV[2], ARGV[4]
if redis.call('EXISTS', rec) == 0 then
  return {0, {}}
end
if not vrf_pending(rec) then
  return {2, redis.call('HGETALL', rec)}
end
if redis.call('HGET', KEYS[2], 'v') == hex then
  redis.call('DEL', KEYS[2])
end
local now = tonumber(ARGV[1])
local ctx = vrf_ctx(ARGV[3], ARGV[5], KEYS[3], KEYS[4])
local expires_at = tonumber(redis.call('HGET', rec, 'x'))
if expires_at and now >= expires_at then
  vrf_finish(ctx, tag, hex, 'expired', nil, now, ARGV[1])
  return {2, redis.call('HGETALL', rec)}
end
vrf_finish(ctx, tag, hex, 'canceled', 'api', now, ARGV[1])
return {1, redis.call('HGETALL', rec)}
