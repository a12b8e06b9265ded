-- One wrk script for every row of bench/run.sh; MODE picks the workload.
--
--   healthz  GET /healthz: no IO, the ceiling of the run.
--   count    a wrong password on one of PHONES pre-sent codes (prefix
--            +7701); with otp.max_attempts raised, every request counts
--            an attempt (422), the full write path of a check.
--   approve  the right password on pre-sent codes (prefix +7702), each
--            code checked once: thread t walks t, t+T, t+2T, ... from
--            BASE; a walk past the pre-sent codes shows up as 404s.
--   miss     a check for a phone that was never sent (+7708): 404.
--   send     a send to a phone nobody was sent to before (+7705, walked
--            like approve), with a generated code: the real send path.
--   wsend    the same by WhatsApp (+7706).
--   vsend    the send through the Twilio-compatible API: POST
--            /v2/Services/VA/Verifications to a new phone (+7707).
--   vapprove the right code through /v2's VerificationCheck, by To, on
--            codes vpresend sent (+7747, walked like approve).
--   vpresend (not measured) as presend, through /v2 with CustomCode
--            123456, to +7747 BASE+t+kT.
--   presend  (not measured) sends code 123456 (for a day, so a long run
--            never checks an expired one) to +<PREFIX> BASE+t+kT
--            for k < QUOTA per thread (PREFIX 7702 by default, 7701 for
--            the codes of count), then only GETs /healthz, so the run
--            may last longer than the sends need.
--
-- Every row counts the HTTP statuses it got, so a row of 429s or 404s
-- cannot pass for checks. done() prints one line for run.sh:
--   RESULT requests=<n> duration_us=<n> p50_us=<n> p99_us=<n> sent=<n> statuses=200:5,422:7
-- (sent: presend's accepted sends).
-- Env: MODE, THREADS (wrk -t, for the walks), PHONES, BASE, QUOTA, PREFIX,
-- VA (the /v2 service) and AUTH (its Authorization header's value).

local mode = os.getenv("MODE") or "healthz"
local nthreads = tonumber(os.getenv("THREADS") or "2")
local phones = tonumber(os.getenv("PHONES") or "1000")
local base = tonumber(os.getenv("BASE") or "0")
local quota = tonumber(os.getenv("QUOTA") or "0")
local prefix = os.getenv("PREFIX") or "7702"
local va = os.getenv("VA") or ""
local form = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = os.getenv("AUTH") or "",
}

-- Runs in the main Lua state, once per thread, before the threads start.
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Each thread's own state from here on.
statuses = {}
local k = 0
local rand = 0
function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
end

local json = { ["Content-Type"] = "application/json" }

local function post(path, body)
  return wrk.format("POST", path, json, body)
end

-- The n-th phone this thread walks (n = tid, tid+T, tid+2T, ...).
local function walk()
  local n = base + tid + k * nthreads
  k = k + 1
  return n
end

-- wrk calls thread 0's request() once before the run, to check that it
-- builds a valid request; that call must not use up a phone of the walk.
local verified = false

request = function()
  if tid == 0 and not verified then
    verified = true
    return wrk.format("GET", "/healthz")
  end
  if mode == "healthz" then
    return wrk.format("GET", "/healthz")
  elseif mode == "count" then
    local n = math.random(0, phones - 1)
    return post("/sms/check", string.format('{"phone":"+7701%07d","password":"000000"}', n))
  elseif mode == "approve" then
    return post("/sms/check", string.format('{"phone":"+7702%07d","password":"123456"}', walk()))
  elseif mode == "miss" then
    local n = math.random(0, 9999999)
    return post("/sms/check", string.format('{"phone":"+7708%07d","password":"123456"}', n))
  elseif mode == "send" then
    return post("/sms", string.format('{"phone":"+7705%07d"}', walk()))
  elseif mode == "wsend" then
    return post("/whatsapp", string.format('{"phone":"+7706%07d"}', walk()))
  elseif mode == "vsend" then
    return wrk.format("POST", "/v2/Services/" .. va .. "/Verifications", form,
      string.format("To=%%2B7707%07d&Channel=sms", walk()))
  elseif mode == "vapprove" then
    return wrk.format("POST", "/v2/Services/" .. va .. "/VerificationCheck", form,
      string.format("To=%%2B7747%07d&Code=123456", walk()))
  elseif mode == "vpresend" then
    if k < quota then
      return wrk.format("POST", "/v2/Services/" .. va .. "/Verifications", form,
        string.format("To=%%2B7747%07d&Channel=sms&CustomCode=123456", walk()))
    end
    return wrk.format("GET", "/healthz")
  elseif mode == "presend" then
    if k < quota then
      return post("/sms", string.format('{"phone":"+%s%07d","password":"123456","lifetime":86400}', prefix, walk()))
    end
    return wrk.format("GET", "/healthz")
  end
  error("unknown MODE " .. mode)
end

sent = 0
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (mode == "presend" and status == 200 and body:find('"sent"', 1, true))
    or (mode == "vpresend" and status == 201) then
    sent = sent + 1
  end
end

function done(summary, latency, requests)
  local total, sent_total = {}, 0
  for _, t in ipairs(threads) do
    sent_total = sent_total + t:get("sent")
    for status, n in pairs(t:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local keys = {}
  for status in pairs(total) do table.insert(keys, status) end
  table.sort(keys)
  local mix = {}
  for _, status in ipairs(keys) do
    table.insert(mix, string.format("%d:%d", status, total[status]))
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d sent=%d statuses=%s\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), sent_total, table.concat(mix, ",")))
end
