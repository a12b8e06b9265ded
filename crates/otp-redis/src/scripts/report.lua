-- report.lua: records a provider's report on one delivery of a
-- verification (the WhatsApp status webhook). The crate applies
-- otp_domain's rule (Verification::reported) to the record it read and
-- sends the deliveries it computed; this script writes them only if the
-- deliveries are still the ones the crate read, so of several instances
-- that receive the same report at once exactly one records it and writes
-- its event.
--
-- KEYS[1]       the verification record (see vrf.lua)
-- KEYS[2]       the outbox
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the id (hex)
-- ARGV[3]       key prefix
-- ARGV[4]       the outbox tag
-- ARGV[5]       the deliveries as the crate read them (the `dl` field)
-- ARGV[6]       the deliveries after the report
-- ARGV[7]       '1' to remove the sealed code (`sc`), else '0'
--
-- Returns {1, status} when recorded, with the record's status now (a
-- check on another instance may have ended it since the crate read it,
-- without touching the deliveries), or {0, ''} when the record is gone or
-- its deliveries changed since they were read (the crate reads again).

local rec = KEYS[1]
if redis.call('HGET', rec, 'dl') ~= ARGV[5] then
  return {0, ''}
end
redis.call('HSET', rec, 'dl', ARGV[6])
if ARGV[7] == '1' then
  redis.call('HDEL', rec, 'sc')
end
local ctx = vrf_ctx(ARGV[3], ARGV[4], KEYS[2], '')
vrf_emit(ctx, rec, ARGV[2], 'otpd.delivery.updated', ARGV[1])
return {1, redis.call('HGET', rec, 's')}
