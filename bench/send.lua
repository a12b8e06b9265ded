-- A send to a random phone (limits are off for the run): one atomic
-- replace-on-send in the store plus the log sink's stdout line.
math.randomseed(os.time() + 1)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = string.format('{"phone":"+7701%07d"}', math.random(0, 9999999))
  return wrk.format(nil, "/sms", nil, body)
end
