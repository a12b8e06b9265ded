-- counters.lua: the fraud guard's sliding-window counters of a prefix,
-- shared by fraud_count.lua, delivered.lua and check_code.lua (so a send's
-- delivery and an approving check count in the same script as their
-- change). Redis has no include, so the crate prepends this file; it has
-- no KEYS or ARGV of its own.
--
-- The rule is otp_domain::fraud::Counters::add: the counters shift to the
-- fixed window that holds now first. The crate computes the window
-- starts, so no time passes through a Lua number: the stored start is
-- compared as the string the crate wrote.
--
-- The counters are a hash of `w` (window start, unix ms), `s`, `a`
-- (sends, approvals of that window), `ps`, `pa` (of the window before).

-- Whether decimal string `a` is a larger number than `b` (both integers
-- without leading zeros, as the crate writes them).
local function counters_larger(a, b)
  return #a > #b or (#a == #b and a > b)
end

-- Adds `sends` and `approvals` to the counters at `key`. `start` is the
-- start of now's window, `before` that of the window before it ('' when
-- there is none), `ttl` (ms) two windows and a margin for clock skew.
-- Returns {w, s, a, ps, pa} after the add, as integer strings.
local function counters_add(key, start, before, sends, approvals, ttl)
  -- No counters are zero counters, whatever window they were of.
  local stored = redis.call('HGET', key, 'w')
  -- A caller whose clock lags the instance that moved the counters on
  -- counts into the stored window (Counters::at): skew wipes nothing.
  if stored and counters_larger(stored, start) then
    -- keep the stored window as it is
  elseif stored ~= start then
    if before ~= '' and stored == before then
      local last = redis.call('HMGET', key, 's', 'a')
      redis.call('HSET', key, 'w', start, 's', '0', 'a', '0',
        'ps', last[1] or '0', 'pa', last[2] or '0')
    else
      redis.call('HSET', key, 'w', start, 's', '0', 'a', '0', 'ps', '0', 'pa', '0')
    end
  end
  redis.call('HINCRBY', key, 's', sends)
  redis.call('HINCRBY', key, 'a', approvals)
  redis.call('PEXPIRE', key, ttl)
  return redis.call('HMGET', key, 'w', 's', 'a', 'ps', 'pa')
end
