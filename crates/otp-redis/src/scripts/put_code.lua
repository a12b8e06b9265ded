-- put_code.lua: the first step of a send (CodeStore::stage_send). Refuses
-- the send when the number's prefix is blocked; counts one hit in every
-- bucket of the destination's own (all or nothing), then in each shared
-- bucket in turn; and stores the code record (replacing any earlier one,
-- whose pending verification ends as canceled/replaced with its event)
-- and the new verification. The order is otp_domain::state::stage_limits.
--
-- KEYS[1]       the code record, a hash: d = digest (hex),
--               e = expires_at (unix ms), a = attempts, m = max_attempts,
--               v = verification id (hex; absent in records written
--               before verifications, whose verification side is a no-op)
-- KEYS[2]       the destination's latest verification id
-- KEYS[3]       the outbox (see vrf.lua)
-- KEYS[4]       the pending verifications (see vrf.lua)
-- KEYS[5..]     the own buckets (ARGV[12] of them), then the shared ones
--               (ARGV[13]), then, when ARGV[14] is '1', the prefix's fraud
--               block, all as in buckets.lua and fraud.lua. A single Redis
--               only: on a cluster they live in other slots, and the crate
--               checks them before this script, which then gets none.
-- ARGV[1]       now (unix ms)
-- ARGV[2]       digest (hex)
-- ARGV[3]       expires_at (unix ms)
-- ARGV[4]       attempts
-- ARGV[5]       max_attempts
-- ARGV[6]       the new verification's id (hex)
-- ARGV[7]       key prefix
-- ARGV[8]       the destination's tag (escaped, as inside the braces)
-- ARGV[9]       the outbox tag
-- ARGV[10]      the id index key to write (single Redis), or '' (Redis
--               Cluster: it lives in another slot; the crate writes it)
-- ARGV[11]      TTL (ms) of the latest pointer and the index
-- ARGV[12]      how many own buckets
-- ARGV[13]      how many shared buckets
-- ARGV[14]      '1' when the last key is a fraud block to honour, else '0'
-- ARGV[15]      '1' for a resend (SendLimits::resend): the code record must
--               already be the live code of verification ARGV[6], else
--               {4, 0, 0} and nothing changes; when it is, only the buckets
--               are counted and the code and the verification stay as they are
-- ARGV[16]      the service sid whose pending verification to keep
--               (SendLimits::reuse), or '': when the code record is the live
--               code of a pending verification with sv = it, {5, 0, 0, id}
--               and nothing changes (checked after the block, before any
--               bucket)
-- ARGV[17..]    limit, window_ms of each bucket, in KEYS order
-- ARGV[..]      then the new record's fields and values (see vrf.lua)
--
-- Returns {status, wait_ms, index, id}: {0, 0, 0} stored; {1, wait, 0} an own
-- bucket was full (nothing changed); {2, wait, i} the shared bucket i
-- (from 0) was full (the buckets before it stay counted, no code was
-- stored); {3, 0, 0} the prefix is blocked (nothing changed); {4, 0, 0} a
-- resend whose code is no longer live (nothing changed); {5, 0, 0, id} the
-- service's pending verification id (hex) to resend (nothing changed). id
-- is '' but with status 5.

local now = tonumber(ARGV[1])
local own, shared = tonumber(ARGV[12]), tonumber(ARGV[13])
if ARGV[14] == '1' then
  -- The Block as the crate wrote it (JSON); `until` is a Lua keyword.
  local json = redis.call('HGET', KEYS[#KEYS], 'j')
  if json then
    local ok, block = pcall(cjson.decode, json)
    if not ok or type(block) ~= 'table' then
      return redis.error_reply('CORRUPT unreadable fraud block')
    end
    local ends = tonumber(block['until'])
    if block.mode == 'block' and ends and ends > now then
      return {3, 0, 0, ''}
    end
  end
end
if ARGV[16] ~= '' then
  -- otp_domain::state::reusable: the live code of a pending verification
  -- of this service.
  local c = redis.call('HMGET', KEYS[1], 'v', 'e', 'a', 'm')
  local live = c[1] and tonumber(c[2]) and tonumber(c[2]) > now
    and tonumber(c[3]) and tonumber(c[4]) and tonumber(c[3]) < tonumber(c[4])
  if live then
    local rec = ARGV[7] .. ':{' .. ARGV[8] .. '}:vrf:' .. c[1]
    local v = redis.call('HMGET', rec, 's', 'sv')
    if v[1] == 'pending' and v[2] == ARGV[16] then
      return {5, 0, 0, c[1]}
    end
  end
end
local resend = ARGV[15] == '1'
if resend then
  -- CodeRecord::is_live_for: this verification's code, unexpired, unlocked.
  local c = redis.call('HMGET', KEYS[1], 'v', 'e', 'a', 'm')
  local live = c[1] == ARGV[6] and tonumber(c[2]) and tonumber(c[2]) > now
    and tonumber(c[3]) and tonumber(c[4]) and tonumber(c[3]) < tonumber(c[4])
  if not live then
    return {4, 0, 0, ''}
  end
end
local wait = hit_buckets(4, 16, own, now, ARGV[1])
if wait > 0 then
  return {1, wait, 0, ''}
end
for j = 1, shared do
  wait = hit_buckets(3 + own + j, 16 + 2 * (own + j - 1), 1, now, ARGV[1])
  if wait > 0 then
    return {2, wait, j - 1, ''}
  end
end
if resend then
  return {0, 0, 0, ''}
end

local key, tag, hex = KEYS[1], ARGV[8], ARGV[6]
local ctx = vrf_ctx(ARGV[7], ARGV[9], KEYS[3], KEYS[4])
local old = redis.call('HGET', key, 'v')
if old and old ~= hex then
  vrf_finish(ctx, tag, old, 'canceled', 'replaced', now, ARGV[1])
end

redis.call('DEL', key)
redis.call('HSET', key, 'd', ARGV[2], 'e', ARGV[3], 'a', ARGV[4], 'm', ARGV[5], 'v', hex)
redis.call('PEXPIRE', key, ttl_ms(tonumber(ARGV[3]), now))

local fields = {}
for i = 17 + 2 * (own + shared), #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local rec = vrf_key(ctx, tag, hex)
redis.call('DEL', rec)
redis.call('HSET', rec, unpack(fields))
local r = redis.call('HMGET', rec, 'x', 'rt', 's')
local expires_at, retention = tonumber(r[1]), tonumber(r[2])
if not (expires_at and retention) then
  return redis.error_reply('CORRUPT verification without expiry or retention')
end
redis.call('PEXPIRE', rec, vrf_ttl(expires_at + retention, now))
if r[3] == 'pending' then
  redis.call('ZADD', ctx.pending, r[1], hex .. tag)
end
redis.call('SET', KEYS[2], hex, 'PX', ARGV[11])
if ARGV[10] ~= '' then
  redis.call('SET', ARGV[10], tag, 'PX', ARGV[11])
end
return {0, 0, 0, ''}
