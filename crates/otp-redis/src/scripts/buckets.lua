-- buckets.lua: the fixed-window rate buckets shared by put_code.lua,
-- put_pairing.lua, take_pairing.lua and hit_bucket.lua. Redis has no
-- include, so the crate prepends this file to each of them at build time;
-- it has no KEYS or ARGV of its own.
--
-- The rule is otp_domain::state::hit_buckets: at most `limit` hits per
-- `window_ms`, the window starting at its first hit; a refusal counts
-- nothing anywhere and reports the longest wait.
--
-- A bucket is a hash: s = window start (unix ms, as the caller sent it),
-- c = hits in the window. Its TTL ends with the window so no sweeper is
-- needed, but the rule always compares `s` with the caller's `now`, never
-- with Redis time, so the two clocks may differ.
--
-- The functions take the `n` buckets KEYS[k0 + j] (j = 1..n), whose limit
-- and window are ARGV[a0 + 2j - 1] and ARGV[a0 + 2j].

-- PEXPIRE refuses huge values; a century is forever for a code.
local MAX_TTL_MS = 3153600000000

-- A TTL for something that ends at `until_ms`, as an integer string:
-- at least 1 ms, and never in float notation.
local function ttl_ms(until_ms, now)
  return string.format('%d', math.max(1, math.min(until_ms - now, MAX_TTL_MS)))
end

-- The hits in the bucket's live window, or nil when there is none
-- (absent, ended, or unreadable: a new window would start now).
local function live_count(key, window, now)
  local state = redis.call('HMGET', key, 's', 'c')
  local start, count = tonumber(state[1]), tonumber(state[2])
  if start and count and now < start + window then
    return count, start + window
  end
  return nil
end

-- The wait in ms until every full bucket has room; 0 when all have room.
-- Changes nothing.
local function buckets_wait(k0, a0, n, now)
  local wait = 0
  for j = 1, n do
    local limit = tonumber(ARGV[a0 + 2 * j - 1])
    local window = tonumber(ARGV[a0 + 2 * j])
    local count, window_end = live_count(KEYS[k0 + j], window, now)
    if count and count >= limit then
      wait = math.max(wait, window_end - now)
    end
  end
  -- Keep the reply an exact integer even for absurd windows.
  return math.min(wait, MAX_TTL_MS)
end

-- Counts one hit in every bucket, starting a window where none is live.
local function buckets_count(k0, a0, n, now, now_arg)
  for j = 1, n do
    local key = KEYS[k0 + j]
    local window = tonumber(ARGV[a0 + 2 * j])
    if live_count(key, window, now) then
      -- HINCRBY keeps the TTL, which still ends with the window.
      redis.call('HINCRBY', key, 'c', 1)
    else
      redis.call('DEL', key)
      redis.call('HSET', key, 's', now_arg, 'c', 1)
      redis.call('PEXPIRE', key, ttl_ms(now + window, now))
    end
  end
end

-- All or nothing: 0 after counting a hit in every bucket, or the wait in
-- ms (> 0) after changing nothing.
local function hit_buckets(k0, a0, n, now, now_arg)
  local wait = buckets_wait(k0, a0, n, now)
  if wait > 0 then
    return wait
  end
  buckets_count(k0, a0, n, now, now_arg)
  return 0
end

