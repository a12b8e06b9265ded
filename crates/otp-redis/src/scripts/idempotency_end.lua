-- idempotency_end.lua: ends a request started under an idempotency key,
-- if it is still this fingerprint's and has no response yet.
--
-- KEYS[1]       the key (see idempotency_begin.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       fingerprint (hex)
-- ARGV[3]       '1' with a response (kept for ARGV[4] ms), '0' without
--               (the key is free again)
-- ARGV[4]       ttl (ms)
-- ARGV[5]       the response
--
-- Returns 1 when it ended the request, else 0.

local r = redis.call('HMGET', KEYS[1], 'f', 'r')
if r[1] ~= ARGV[2] or r[2] then
  return 0
end
if ARGV[3] ~= '1' then
  redis.call('DEL', KEYS[1])
  return 1
end
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'r', ARGV[5], 'u', string.format('%d', now + ttl))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, ttl)))
return 1
