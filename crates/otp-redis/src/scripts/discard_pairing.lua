-- discard_pairing.lua: removes a pairing after a failed delivery, and the
-- chat's pointer to it.
--
-- KEYS[1]       the pairing (see put_pairing.lua)
-- ARGV[1]       the prefix of chat keys; the chat id completes it
--
-- Returns 1 when a pairing was removed, else 0.
--
-- The chat key is built from the stored chat id, so it cannot be declared
-- in KEYS; it carries the pairing hash tag, so it is in the same slot.

local pairing = KEYS[1]
local chat = redis.call('HGET', pairing, 'c')
if not chat then
  return redis.call('DEL', pairing)
end
redis.call('DEL', pairing)
local chat_key = ARGV[1] .. chat
if redis.call('GET', chat_key) == pairing then
  redis.call('DEL', chat_key)
end
return 1
