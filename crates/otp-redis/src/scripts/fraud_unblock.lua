-- fraud_unblock.lua: lifts a prefix's active block now, with its
-- prefix_unblocked event. An expired block is left to the sweep.
--
-- KEYS[1]       the block (see fraud.lua)
-- KEYS[2]       the blocked prefixes by until
-- KEYS[3]       the outbox
-- KEYS[4]       the prefix's counters (forgotten: the prefix starts afresh)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the number prefix
-- ARGV[3]       what the outbox's event keys start with
-- ARGV[4]       the unblocked event's kind
--
-- Returns the lifted Block's JSON, or '' when there was no active block.

local current = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not current or tonumber(current) <= tonumber(ARGV[1]) then
  return ''
end
local lifted = fraud_end(KEYS[1], KEYS[2], ARGV[2], ARGV[3], KEYS[3], ARGV[4], ARGV[1])
if lifted then
  redis.call('DEL', KEYS[4])
end
return lifted or ''
