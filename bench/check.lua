-- A check with a wrong password against one of the pre-sent phones:
-- every request runs the full atomic check (read, compare, count the
-- attempt, lock at the limit), answering 422 and later 429.
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local phones = tonumber(os.getenv("PHONES") or "1000")
request = function()
  local n = math.random(0, phones - 1)
  local body = string.format('{"phone":"+7701%07d","password":"000000"}', n)
  return wrk.format(nil, "/sms/check", nil, body)
end
