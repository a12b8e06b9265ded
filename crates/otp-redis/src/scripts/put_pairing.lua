-- put_pairing.lua: stores a Telegram pairing digest -> chat, replacing
-- the chat's earlier pairing, after counting one hit in every bucket.
--
-- KEYS[1]       the pairing, a hash: c = chat id (decimal string),
--               e = expires_at (unix ms)
-- KEYS[2]       the chat's current pairing: a string holding the name of
--               its pairing key
-- KEYS[3..]     one rate bucket each (see buckets.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       chat id (decimal)
-- ARGV[3]       expires_at (unix ms)
-- ARGV[4..]     limit, window_ms of each bucket, in KEYS order
--
-- Returns {0, 0} stored, {1, 0} collision (another chat holds an active
-- pairing with this digest; nothing changed), {2, wait_ms} rate limited
-- (nothing changed).
--
-- The chat's old pairing key is read from KEYS[2], so it cannot be
-- declared in KEYS. Every pairing key carries the same hash tag, so it is
-- in the same cluster slot, which Redis allows.

local now = tonumber(ARGV[1])
local chat = ARGV[2]
local pairing, chat_key = KEYS[1], KEYS[2]

local current = redis.call('HMGET', pairing, 'c', 'e')
if current[1] and current[1] ~= chat then
  local expires_at = tonumber(current[2])
  if not expires_at then
    return redis.error_reply('CORRUPT unreadable pairing')
  end
  if now < expires_at then
    return {1, 0}
  end
end

local retry = hit_buckets(2, 3, #KEYS - 2, now, ARGV[1])
if retry > 0 then
  return {2, retry}
end

-- Drop the chat's older pairing, unless another chat has since taken that
-- digest over (after it expired): that pairing is not ours to remove.
local old = redis.call('GET', chat_key)
if old and old ~= pairing and redis.call('HGET', old, 'c') == chat then
  redis.call('DEL', old)
end

local ttl = ttl_ms(tonumber(ARGV[3]), now)
redis.call('DEL', pairing)
redis.call('HSET', pairing, 'c', chat, 'e', ARGV[3])
redis.call('PEXPIRE', pairing, ttl)
redis.call('SET', chat_key, pairing, 'PX', ttl)
return {0, 0}
