-- fraud_count.lua: adds sends and approvals to a prefix's sliding-window
-- counters, shifting them to the fixed window that holds now first
-- (otp_domain::fraud::Counters::add). The crate computes the window
-- starts, so no time passes through a Lua number: the stored start is
-- compared as the string the crate wrote.
--
-- KEYS[1]       the counters: a hash of `w` (window start, unix ms),
--               `s`, `a` (sends, approvals of that window), `ps`, `pa`
--               (of the window before)
-- ARGV[1]       the start of now's window
-- ARGV[2]       the start of the window before it ('' when there is none)
-- ARGV[3]       sends to add
-- ARGV[4]       approvals to add
-- ARGV[5]       TTL (ms): two windows (after which the counters are zero)
--               and a margin for clock skew
--
-- Returns {w, s, a, ps, pa} after the add, as integer strings.

local key = KEYS[1]
-- Whether decimal string `a` is a larger number than `b` (both integers
-- without leading zeros, as the crate writes them).
local function larger(a, b)
  return #a > #b or (#a == #b and a > b)
end
-- No counters are zero counters, whatever window they were of.
local stored = redis.call('HGET', key, 'w')
-- A caller whose clock lags the instance that moved the counters on
-- counts into the stored window (Counters::at): skew wipes nothing.
if stored and larger(stored, ARGV[1]) then
  -- keep the stored window as it is
elseif stored ~= ARGV[1] then
  if ARGV[2] ~= '' and stored == ARGV[2] then
    local last = redis.call('HMGET', key, 's', 'a')
    redis.call('HSET', key, 'w', ARGV[1], 's', '0', 'a', '0',
      'ps', last[1] or '0', 'pa', last[2] or '0')
  else
    redis.call('HSET', key, 'w', ARGV[1], 's', '0', 'a', '0', 'ps', '0', 'pa', '0')
  end
end
redis.call('HINCRBY', key, 's', ARGV[3])
redis.call('HINCRBY', key, 'a', ARGV[4])
redis.call('PEXPIRE', key, ARGV[5])
return redis.call('HMGET', key, 'w', 's', 'a', 'ps', 'pa')
