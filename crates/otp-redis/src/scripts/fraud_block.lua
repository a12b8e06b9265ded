-- fraud_block.lua: blocks a prefix unless it has an active block, with
-- its prefix_blocked event, in one step: of several instances that judge
-- a prefix at once, exactly one blocks it. An expired block not swept
-- yet is ended first, with its own unblocked event, so every block's end
-- is announced once.
--
-- KEYS[1]       the block (see fraud.lua)
-- KEYS[2]       the blocked prefixes by until
-- KEYS[3]       the outbox
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the number prefix
-- ARGV[3]       until (unix ms)
-- ARGV[4]       the Block as JSON
-- ARGV[5]       the id of its blocked event
-- ARGV[6]       the id of its (future) unblocked event
-- ARGV[7]       what the outbox's event keys start with
-- ARGV[8]       the blocked event's kind
-- ARGV[9]       the unblocked event's kind
--
-- Returns 1 when blocked now, 0 when the prefix has an active block.

local now = tonumber(ARGV[1])
local current = redis.call('ZSCORE', KEYS[2], ARGV[2])
if current and tonumber(current) > now then
  return 0
end
if current or redis.call('EXISTS', KEYS[1]) == 1 then
  fraud_end(KEYS[1], KEYS[2], ARGV[2], ARGV[7], KEYS[3], ARGV[9], ARGV[1])
end
redis.call('HSET', KEYS[1], 'j', ARGV[4], 'ue', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
fraud_emit(ARGV[7], KEYS[3], ARGV[5], ARGV[8], ARGV[1], ARGV[1], ARGV[4])
return 1
