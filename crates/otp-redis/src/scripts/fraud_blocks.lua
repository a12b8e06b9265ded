-- fraud_blocks.lua: every active block (until after now), read only.
--
-- KEYS[1]       the blocked prefixes by until (see fraud.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       what the block keys start with (the prefix completes them)
--
-- Returns the Blocks' JSON.

local active = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local out = {}
for _, member in ipairs(active) do
  local json = redis.call('HGET', ARGV[2] .. member, 'j')
  if json then
    out[#out + 1] = json
  end
end
return out
