-- latest.lua: the latest verification of a destination.
--
-- KEYS[1]       the destination's latest verification id
-- ARGV[1]       what its verification keys start with; the id completes
--               them
--
-- Returns the record's fields and values, or an empty array.

local hex = redis.call('GET', KEYS[1])
if not hex then
  return {}
end
return redis.call('HGETALL', ARGV[1] .. hex)
