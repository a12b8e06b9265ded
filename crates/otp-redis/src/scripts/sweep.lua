-- sweep.lua: ends up to `max` pending verifications of one outbox tag
-- whose expiry is due as expired, each with one event, and deletes their
-- codes. Atomic per outbox tag, so concurrent sweeps expire each once.
--
-- KEYS[1]       the pending verifications (see vrf.lua)
-- KEYS[2]       the outbox
-- ARGV[1]       now (unix ms)
-- ARGV[2]       max
-- ARGV[3]       key prefix
-- ARGV[4]       the outbox tag
--
-- Returns {expired, next}: how many it expired, and when this outbox next
-- has work ('' for never).

local now = tonumber(ARGV[1])
local ctx = vrf_ctx(ARGV[3], ARGV[4], KEYS[2], KEYS[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local expired = 0
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local hex, tag = string.sub(member, 1, 32), string.sub(member, 33)
  if vrf_finish(ctx, tag, hex, 'expired', nil, now, ARGV[1]) then
    expired = expired + 1
    local code = vrf_code_key(ctx, tag)
    if redis.call('HGET', code, 'v') == hex then
      redis.call('DEL', code)
    end
  end
end
return {expired, vrf_next(KEYS[2], KEYS[1])}
