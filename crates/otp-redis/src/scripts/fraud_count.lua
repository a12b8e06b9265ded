-- fraud_count.lua: adds sends and approvals to a prefix's counters (see
-- counters.lua).
--
-- KEYS[1]       the counters
-- ARGV[1]       the start of now's window
-- ARGV[2]       the start of the window before it ('' when there is none)
-- ARGV[3]       sends to add
-- ARGV[4]       approvals to add
-- ARGV[5]       TTL (ms)
--
-- Returns {w, s, a, ps, pa} after the add, as integer strings.

return counters_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
