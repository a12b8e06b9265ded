-- delivered.lua: the second step of a send. The code of a pending
-- verification went out: records the delivery attempts and writes its
-- `pending` event; with a fraud tally, counts one send under its prefix
-- (see counters.lua); in one step.
--
-- KEYS[1]       the verification record (see vrf.lua), or, when ARGV[6]
--               is '1' (a single Redis), the id index that names its tag
-- KEYS[2]       the outbox
-- KEYS[3]       the fraud counters (only with a tally, a single Redis)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the id (hex)
-- ARGV[3]       key prefix
-- ARGV[4]       the outbox tag
-- ARGV[5]       the attempts (JSON array)
-- ARGV[6]       '1' when KEYS[1] is the index, else '0'
-- ARGV[7..9]    with KEYS[3]: window start, the window before, TTL (ms)
--               (see counters.lua)
--
-- Returns {recorded} or, with a tally, {recorded, w, s, a, ps, pa}, all
-- strings: recorded is '1' when recorded, '0' when the verification is
-- gone or ended; the tally counts either way.

local ctx = vrf_ctx(ARGV[3], ARGV[4], KEYS[2], '')
local rec = KEYS[1]
if ARGV[6] == '1' then
  local tag = redis.call('GET', KEYS[1])
  rec = tag and vrf_key(ctx, tag, ARGV[2])
end
local recorded = '0'
if rec and vrf_pending(rec) then
  redis.call('HSET', rec, 'dl', vrf_splice(redis.call('HGET', rec, 'dl'), ARGV[5]))
  -- No status report can name a delivery without a provider message id:
  -- the sealed code is of no more use (Verification::delivered), unless
  -- the verification is a /v2 service's (sv), whose resend reuses it.
  if not string.find(ARGV[5], '"message_id":', 1, true)
    and redis.call('HEXISTS', rec, 'sv') == 0 then
    redis.call('HDEL', rec, 'sc')
  end
  vrf_emit(ctx, rec, ARGV[2], 'otpd.verification.pending', ARGV[1])
  recorded = '1'
end
if not KEYS[3] then
  return {recorded}
end
-- The delivery is recorded first; a count that fails (a damaged counters
-- key) leaves it so and answers without counters, which the crate reports.
local ok, c = pcall(counters_add, KEYS[3], ARGV[7], ARGV[8], '1', '0', ARGV[9])
if not ok then
  return {recorded}
end
return {recorded, c[1], c[2], c[3], c[4], c[5]}
