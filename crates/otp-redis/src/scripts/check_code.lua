-- check_code.lua: check-and-consume, as otp_domain::state::check.
--
-- KEYS[1]       the code record (see put_code.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       digest (hex) of the code being checked
--
-- Returns {status, attempts_left}: {0, 0} no code or expired,
-- {1, 0} approved (the record is gone), {2, n} mismatch with n attempts
-- left, {3, 0} locked (nothing counted).

local key = KEYS[1]
local now = tonumber(ARGV[1])
local r = redis.call('HMGET', key, 'd', 'e', 'a', 'm')
if not (r[1] or r[2] or r[3] or r[4]) then
  return {0, 0}
end
local digest, expires_at = r[1], tonumber(r[2])
local attempts, max_attempts = tonumber(r[3]), tonumber(r[4])
if not (digest and expires_at and attempts and max_attempts) then
  return redis.error_reply('CORRUPT unreadable code record')
end

-- The TTL may not have fired yet (or the caller's clock is ahead): the
-- caller's `now` decides.
if now >= expires_at then
  redis.call('DEL', key)
  return {0, 0}
end
if attempts >= max_attempts then
  return {3, 0}
end
-- Plain string equality is fine here: both sides are HMACs under a
-- secret the caller cannot see, so timing says nothing about the code.
if digest == ARGV[2] then
  redis.call('DEL', key)
  return {1, 0}
end
-- HINCRBY keeps the record's TTL.
attempts = redis.call('HINCRBY', key, 'a', 1)
return {2, max_attempts - attempts}
