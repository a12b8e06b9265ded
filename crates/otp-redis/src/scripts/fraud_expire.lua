-- fraud_expire.lua: ends up to `max` blocks whose until is at or before
-- now, each with its prefix_unblocked event. Atomic, so concurrent sweeps
-- end each block once.
--
-- KEYS[1]       the blocked prefixes by until (see fraud.lua)
-- KEYS[2]       the outbox
-- ARGV[1]       now (unix ms)
-- ARGV[2]       max
-- ARGV[3]       what the block keys start with (the prefix completes them)
-- ARGV[4]       what the outbox's event keys start with
-- ARGV[5]       the unblocked event's kind
--
-- Returns the ended Blocks' JSON.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  local json = fraud_end(ARGV[3] .. member, KEYS[1], member, ARGV[4], KEYS[2], ARGV[5], ARGV[1])
  if json then
    out[#out + 1] = json
  end
end
return out
