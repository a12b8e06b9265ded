-- claim_events.lua: leases up to `max` due events of one outbox: each is
-- due again only at `now + lease`, so concurrent claims never hand out
-- the same event within a lease.
--
-- KEYS[1]       the outbox (see vrf.lua)
-- KEYS[2]       the pending verifications (see vrf.lua)
-- ARGV[1]       now (unix ms)
-- ARGV[2]       the lease's end (unix ms)
-- ARGV[3]       max
-- ARGV[4]       what the event keys start with
--
-- Returns {events, next}: the events, each as its hash's fields and
-- values, and when this outbox next has work ('' for never).

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  local event = redis.call('HGETALL', ARGV[4] .. id)
  if #event == 0 then
    -- Its hash is gone (settled by another instance meanwhile).
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = event
  end
end
return {out, vrf_next(KEYS[1], KEYS[2])}
