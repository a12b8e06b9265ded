-- discard_code.lua: removes a code only if it is still the one that was
-- sent, so a failed delivery never removes a newer code.
--
-- KEYS[1]       the code record (see put_code.lua)
-- ARGV[1]       digest (hex) of the code to remove
--
-- Returns 1 when removed, else 0.

if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
