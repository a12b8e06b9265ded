-- vrf.lua: verification records and their events, shared by the scripts
-- that change a code (put_code, check_code, discard_code) and by
-- delivered, cancel and sweep. Redis has no include, so the crate
-- prepends this file to each of them; it has no KEYS or ARGV of its own.
--
-- The rules are otp_domain::verification's transitions; a status changes
-- in the same script as the code change that causes it, so several otpd
-- instances sharing Redis never disagree about it.
--
-- A record is a hash `<prefix>:{<dest tag>}:vrf:<id hex>`, in its code's
-- slot, with flat fields (the crate reads them back, see lib.rs):
--   id hex id, ch channel, to destination, cc country (optional), lc locale (optional),
--   s status, rs cancel reason (optional), c created_at, x expires_at,
--   a attempts, m max_attempts, dl delivery attempts (a JSON array the
--   crate writes; scripts only splice arrays together), en ended_at
--   (optional), rt retention_ms, ev events written so far, sc the sealed
--   code (optional, hex; see otp_domain::digest::SealedCode), dropped when
--   the record ends, by a delivery without a message id (delivered.lua)
--   and by a report (report.lua), and never copied into an event; sv the
--   /v2 service sid that sent it (optional; with it, delivered.lua keeps sc).
-- Times are integer strings (unix ms) as the caller sent them: no Lua
-- number ever becomes a stored time, and no JSON is encoded here (cjson
-- would write an empty array as `{}` and round long numbers).
--
-- An event is a hash `<prefix>:{<outbox tag>}:evt:<event id>`: `@id`,
-- `@kind` (its CloudEvents type), `@time`, `@tries`, `@delivered` (JSON
-- array of sink names) and a copy of the record's fields right after the
-- change. Its id is in the sorted set `<prefix>:{<outbox tag>}:due`,
-- scored by when it is due. The outbox tag is one fixed tag on a single
-- Redis, and on Redis Cluster a tag of the code's slot.
--
-- Pending verifications are in `<prefix>:{<outbox tag>}:pending`, scored
-- by expires_at, as `<id hex><dest tag>`, for the sweeper.

-- PEXPIRE refuses huge values; a century is forever here.
local VRF_MAX_TTL_MS = 3153600000000

local function vrf_ttl(until_ms, now)
  return string.format('%d', math.max(1, math.min(until_ms - now, VRF_MAX_TTL_MS)))
end

-- What the keys of one call are built from.
-- An empty `outbox` means events are off (no sink is configured): the
-- records change as ever, and no event is written.
local function vrf_ctx(prefix, outbox, due, pending)
  return {
    off = outbox == '',
    prefix = prefix,
    due = due,
    pending = pending,
    events = prefix .. ':{' .. outbox .. '}:evt:',
  }
end

local function vrf_key(ctx, tag, hex)
  return ctx.prefix .. ':{' .. tag .. '}:vrf:' .. hex
end

local function vrf_code_key(ctx, tag)
  return ctx.prefix .. ':{' .. tag .. '}:code'
end

-- Two JSON arrays as one (both written by the crate, compact).
local function vrf_splice(a, b)
  if not a or a == '' or a == '[]' then
    return b
  end
  if b == '[]' then
    return a
  end
  return string.sub(a, 1, -2) .. ',' .. string.sub(b, 2)
end

-- Writes the next event of the record `rec` (id `hex`) to the outbox,
-- due now, with a copy of the record as it is now.
local function vrf_emit(ctx, rec, hex, kind, now_arg)
  if ctx.off then
    return
  end
  local n = redis.call('HINCRBY', rec, 'ev', 1)
  local id = 'evt_' .. hex .. '_' .. string.format('%d', n)
  local key = ctx.events .. id
  local snapshot = redis.call('HGETALL', rec)
  redis.call('DEL', key)
  redis.call('HSET', key, '@id', id, '@kind', kind, '@time', now_arg,
    '@tries', '0', '@delivered', '[]', unpack(snapshot))
  -- The sealed code lives in the record only (see sc above).
  redis.call('HDEL', key, 'sc')
  redis.call('ZADD', ctx.due, now_arg, id)
end

-- Whether the record exists and is pending.
local function vrf_pending(rec)
  return redis.call('HGET', rec, 's') == 'pending'
end

-- Ends the pending verification `hex` of destination tag `tag` with
-- `status` (and `reason`, or nil) at `now`, and writes its event; the
-- record is kept for its retention from now. Returns whether it was
-- pending (an ended verification never changes again).
local function vrf_finish(ctx, tag, hex, status, reason, now, now_arg)
  local rec = vrf_key(ctx, tag, hex)
  if not vrf_pending(rec) then
    return false
  end
  redis.call('HSET', rec, 's', status, 'en', now_arg)
  -- Its code is dead: nothing will resend it.
  redis.call('HDEL', rec, 'sc')
  if reason then
    redis.call('HSET', rec, 'rs', reason)
  end
  redis.call('ZREM', ctx.pending, hex .. tag)
  local retention = tonumber(redis.call('HGET', rec, 'rt')) or 0
  redis.call('PEXPIRE', rec, vrf_ttl(now + retention, now))
  vrf_emit(ctx, rec, hex, 'otpd.verification.' .. status, now_arg)
  return true
end

-- One counted wrong check: the one that uses the last attempt ends the
-- verification as max_attempts_reached. Returns whether that happened.
local function vrf_mismatch(ctx, tag, hex, now, now_arg)
  local rec = vrf_key(ctx, tag, hex)
  if not vrf_pending(rec) then
    return false
  end
  local attempts = redis.call('HINCRBY', rec, 'a', 1)
  local max_attempts = tonumber(redis.call('HGET', rec, 'm'))
  if max_attempts and attempts >= max_attempts then
    return vrf_finish(ctx, tag, hex, 'max_attempts_reached', nil, now, now_arg)
  end
  return false
end

-- When the outbox tag next has work: the earliest due event or pending
-- expiry, as Redis prints the score (an integer string), or '' for none.
local function vrf_next(due, pending)
  local first = ''
  local best = nil
  for _, key in ipairs({due, pending}) do
    local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if r[2] and (not best or tonumber(r[2]) < best) then
      best, first = tonumber(r[2]), r[2]
    end
  end
  return first
end
