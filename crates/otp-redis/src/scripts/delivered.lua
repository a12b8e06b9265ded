-- delivered.lua: the code of a pending verification went out: records
-- the delivery attempts and writes its `pending` event, in one step.
--
-- KEYS[1]       the verification record (see vrf.lua)
-- KEYS[2]       the outbox
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the id (hex)
-- ARGV[3]       key prefix
-- ARGV[4]       the outbox tag
-- ARGV[5]       the attempts (JSON array)
--
-- Returns 1 when recorded, 0 when the verification is gone or ended.

local rec = KEYS[1]
if not vrf_pending(rec) then
  return 0
end
local ctx = vrf_ctx(ARGV[3], ARGV[4], KEYS[2], '')
redis.call('HSET', rec, 'dl', vrf_splice(redis.call('HGET', rec, 'dl'), ARGV[5]))
vrf_emit(ctx, rec, ARGV[2], 'otpd.verification.pending', ARGV[1])
return 1
