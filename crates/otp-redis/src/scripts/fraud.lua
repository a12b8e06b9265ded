-- fraud.lua: the fraud guard's blocks and their events, shared by
-- fraud_block, fraud_unblock and fraud_expire. Redis has no include, so
-- the crate prepends this file to each; it has no KEYS or ARGV of its own.
--
-- Every fraud key carries the hash tag `{fraud}`, one slot:
--   <prefix>:{fraud}:b:<number prefix>   a block: a hash of `j` (the Block
--                                        as JSON, written by the crate)
--                                        and `ue` (the id of the event its
--                                        end writes, also from the crate)
--   <prefix>:{fraud}:blocks              the blocked prefixes by `until`
-- A block has no TTL: it lives until unblock or the sweep of expired
-- blocks ends it with its event (as a pending verification does).
--
-- Events go to the outbox of `{fraud}`'s slot (the single outbox on one
-- Redis), as a hash `@id`, `@kind`, `@time`, `@tries`, `@delivered` and
-- `@block` (the Block as JSON) instead of a record's fields. Ids and
-- kinds all come from the crate (otp_domain's StoredEvent::fraud).

-- Writes a fraud event dated `time_arg`, due now.
local function fraud_emit(events, due, id, kind, now_arg, time_arg, block_json)
  local key = events .. id
  redis.call('DEL', key)
  redis.call('HSET', key, '@id', id, '@kind', kind, '@time', time_arg,
    '@tries', '0', '@delivered', '[]', '@block', block_json)
  redis.call('ZADD', due, now_arg, id)
end

-- Ends the block of `member` (a number prefix) stored at `key`: removes
-- it and writes its unblocked event, dated when the block ended: its
-- until when it expired (a sweep or the next block may come later), now
-- when it is lifted early (as StoredEvent::fraud dates it). Returns its
-- JSON, or nil when the block's hash is gone (then only the index entry
-- is dropped).
local function fraud_end(key, blocks, member, events, due, kind, now_arg)
  local ends = redis.call('ZSCORE', blocks, member)
  local ended = now_arg
  if ends and tonumber(ends) < tonumber(now_arg) then
    ended = string.format('%d', tonumber(ends))
  end
  redis.call('ZREM', blocks, member)
  local found = redis.call('HMGET', key, 'j', 'ue')
  redis.call('DEL', key)
  if not found[1] or not found[2] then
    return nil
  end
  fraud_emit(events, due, found[2], kind, now_arg, ended, found[1])
  return found[1]
end
