-- idempotency_begin.lua: starts a request under an idempotency key.
--
-- KEYS[1]       the key, a hash: f = fingerprint (hex), u = held until
--               (unix ms, the caller's clock decides), r = the response
--               (once the request ended with one)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       fingerprint (hex)
-- ARGV[3]       lease (ms)
--
-- Returns {status, response}: {0, ''} started, {1, ''} in progress,
-- {2, response} replay, {3, ''} another fingerprint.

local now = tonumber(ARGV[1])
local r = redis.call('HMGET', KEYS[1], 'f', 'u', 'r')
local until_ms = tonumber(r[2])
if r[1] and until_ms and until_ms > now then
  if r[1] ~= ARGV[2] then
    return {3, ''}
  end
  if r[3] then
    return {2, r[3]}
  end
  return {1, ''}
end
local lease = tonumber(ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'f', ARGV[2], 'u', string.format('%d', now + lease))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, lease)))
return {0, ''}
