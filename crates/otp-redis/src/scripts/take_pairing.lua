-- take_pairing.lua: trades a pairing digest for its chat, once, counting
-- failed lookups. An expired pairing is deleted and counts as a failure.
--
-- KEYS[1]       the pairing (see put_pairing.lua)
-- KEYS[2]       optional: the bucket of failed lookups (see buckets.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the prefix of chat keys; the chat id completes it
-- ARGV[3..4]    with KEYS[2]: its limit, window_ms
--
-- Returns {status, value} with value a string:
-- {0, ''} not found (counted), {1, chat id} found (the pairing is gone),
-- {2, wait_ms} the failure bucket is full (nothing looked up or changed).
--
-- The chat key is built from the stored chat id, so it cannot be declared
-- in KEYS; it carries the pairing hash tag, so it is in the same slot.

local now = tonumber(ARGV[1])
local pairing = KEYS[1]
local failures = #KEYS - 1

local wait = buckets_wait(1, 2, failures, now)
if wait > 0 then
  return {2, string.format('%d', wait)}
end

local r = redis.call('HMGET', pairing, 'c', 'e')
local chat, expires_at = r[1], tonumber(r[2])
if (r[1] or r[2]) and not (chat and expires_at) then
  return redis.error_reply('CORRUPT unreadable pairing')
end
if chat then
  redis.call('DEL', pairing)
  local chat_key = ARGV[2] .. chat
  if redis.call('GET', chat_key) == pairing then
    redis.call('DEL', chat_key)
  end
  if now < expires_at then
    return {1, chat}
  end
end

buckets_count(1, 2, failures, now, ARGV[1])
return {0, ''}
