-- discard_code.lua: removes a code only if it is still the one that was
-- sent, so a failed delivery never removes a newer code; in the same step
-- its verification ends as failed (with the attempts and two events), or,
-- for a send a limit refused, is deleted without a trace.
--
-- KEYS[1]       the code record (see put_code.lua)
-- KEYS[2]       the outbox (see vrf.lua)
-- KEYS[3]       the pending verifications (see vrf.lua)
-- KEYS[4]       the destination's latest verification id
-- ARGV[1]       digest (hex) of the code to remove
-- ARGV[2]       now (unix ms)
-- ARGV[3]       key prefix
-- ARGV[4]       the destination's tag
-- ARGV[5]       the outbox tag
-- ARGV[6]       the failed delivery attempts (JSON array), or '' when no
--               delivery failed (the send was refused)
--
-- Returns 1 when removed, else 0.

local r = redis.call('HMGET', KEYS[1], 'd', 'v')
if r[1] ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local hex, tag = r[2], ARGV[4]
if not hex then
  return 1
end
local now = tonumber(ARGV[2])
local ctx = vrf_ctx(ARGV[3], ARGV[5], KEYS[2], KEYS[3])
local rec = vrf_key(ctx, tag, hex)
if ARGV[6] ~= '' then
  if vrf_pending(rec) then
    redis.call('HSET', rec, 'dl', vrf_splice(redis.call('HGET', rec, 'dl'), ARGV[6]))
    vrf_emit(ctx, rec, hex, 'otpd.delivery.failed', ARGV[2])
    vrf_finish(ctx, tag, hex, 'failed', nil, now, ARGV[2])
  end
else
  redis.call('DEL', rec)
  redis.call('ZREM', ctx.pending, hex .. tag)
  if redis.call('GET', KEYS[4]) == hex then
    redis.call('DEL', KEYS[4])
  end
end
return 1
