-- settle_event.lua: removes a delivered event, or schedules its next
-- round.
--
-- KEYS[1]       the outbox (see vrf.lua)
-- KEYS[2]       the event
-- ARGV[1]       the event id
-- ARGV[2]       '' for done, else the next round's due time (unix ms)
-- ARGV[3]       with a next round: the sinks that have it (JSON array)
--
-- Returns 1 when the event was there, else 0.

if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return redis.call('DEL', KEYS[2])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('HINCRBY', KEYS[2], '@tries', 1)
redis.call('HSET', KEYS[2], '@delivered', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
