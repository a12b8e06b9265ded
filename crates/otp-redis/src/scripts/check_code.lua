-- check_code.lua: check-and-consume, as otp_domain::state::check, and the
-- verification's change (Verification::after_check) with its event.
--
-- KEYS[1]       the code record (see put_code.lua)
-- KEYS[2]       the outbox (see vrf.lua)
-- KEYS[3]       the pending verifications (see vrf.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       digest (hex) of the code being checked
-- ARGV[3]       key prefix
-- ARGV[4]       the destination's tag
-- ARGV[5]       the outbox tag
-- ARGV[6]       the scope's verification id (hex), or '': the check touches
--               only that verification's code (CheckScope::Verification)
-- ARGV[7]       the scope's service sid, or '': the check touches only a
--               code whose verification has sv = it (CheckScope::Service)
-- KEYS[4]       the fraud counters, to count an approval under the
--               number's prefix (only with a tally, a single Redis)
-- ARGV[8..10]   with KEYS[4]: window start, the window before, TTL (ms)
--               (see counters.lua)
--
-- Returns {status, attempts_left, events, id, created}: {0, 0} no code,
-- an expired one or one outside the scope (nothing changed then), {1, 0}
-- approved (the record is gone), {2, n} mismatch with n attempts left,
-- {3, 0} locked (nothing counted); events is 1 when the check wrote an
-- event, else 0; id (hex) and created (unix ms) name the code's
-- verification, '' with status 0 or when it has none.

local key = KEYS[1]
local now = tonumber(ARGV[1])
local r = redis.call('HMGET', key, 'd', 'e', 'a', 'm', 'v')
if not (r[1] or r[2] or r[3] or r[4]) then
  return {0, 0, 0, '', ''}
end
local digest, expires_at = r[1], tonumber(r[2])
local attempts, max_attempts = tonumber(r[3]), tonumber(r[4])
if not (digest and expires_at and attempts and max_attempts) then
  return redis.error_reply('CORRUPT unreadable code record')
end
-- A record written before verifications has none: nothing more to do.
local hex, tag = r[5], ARGV[4]
local ctx = vrf_ctx(ARGV[3], ARGV[5], KEYS[2], KEYS[3])
local created = ''
if hex then
  local o = redis.call('HMGET', vrf_key(ctx, tag, hex), 'sv', 'c')
  if ARGV[7] ~= '' and o[1] ~= ARGV[7] then
    return {0, 0, 0, '', ''}
  end
  created = o[2] or ''
end
if (ARGV[6] ~= '' and hex ~= ARGV[6]) or (ARGV[7] ~= '' and not hex) then
  return {0, 0, 0, '', ''}
end
local id = hex or ''

-- The TTL may not have fired yet (or the caller's clock is ahead): the
-- caller's `now` decides.
if now >= expires_at then
  redis.call('DEL', key)
  if hex and vrf_finish(ctx, tag, hex, 'expired', nil, now, ARGV[1]) then
    return {0, 0, 1, '', ''}
  end
  return {0, 0, 0, '', ''}
end
if attempts >= max_attempts then
  return {3, 0, 0, id, created}
end
-- Plain string equality is fine here: both sides are HMACs under a
-- secret the caller cannot see, so timing says nothing about the code.
if digest == ARGV[2] then
  redis.call('DEL', key)
  local wrote = hex and vrf_finish(ctx, tag, hex, 'approved', nil, now, ARGV[1])
  -- Scripts do not roll back: the approval is written first, and a count
  -- that fails (a damaged counters key) must not undo it halfway.
  if KEYS[4] then
    pcall(counters_add, KEYS[4], ARGV[8], ARGV[9], '0', '1', ARGV[10])
  end
  if wrote then
    return {1, 0, 1, id, created}
  end
  return {1, 0, 0, id, created}
end
-- HINCRBY keeps the record's TTL.
attempts = redis.call('HINCRBY', key, 'a', 1)
if hex and vrf_mismatch(ctx, tag, hex, now, ARGV[1]) then
  return {2, max_attempts - attempts, 1, id, created}
end
return {2, max_attempts - attempts, 0, id, created}
