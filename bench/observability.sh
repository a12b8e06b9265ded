#!/usr/bin/env bash
# What metrics and logging cost on the check path, in one run:
#   ./bench/observability.sh            (DURATION=8s ROUNDS=2 by default)
# Five otpd processes on one redis-server differ only in metrics and
# logging. Each is driven in turn (interleaved rounds) with wrk -t2 -c64:
# /healthz, then checks that count an attempt (wrong password, max_attempts
# 1e6, so no check hits the cheap "locked" path). Reports req/s, p99, the
# ratio to the same process's /healthz, and otpd CPU µs per request from
# /proc/PID/stat (which suffers less from other load on the machine).
# Logs go to /dev/null; the last step also shows a blocked log reader.
# Env: DURATION, ROUNDS, OTPD_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-8s}"
ROUNDS="${ROUNDS:-2}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }

# OTPD_BIN=path runs a prebuilt binary instead of building one.
if [ -z "${OTPD_BIN:-}" ]; then cargo build --release -q -p otp-server; fi
BIN="${OTPD_BIN:-target/release/otpd}"
work=$(mktemp -d)
pids=()
# Every child inherits flock's lock: none may outlive the script.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

common=(OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$redis_port"
        OTP_SECURITY__SECRET=bench-secret-0123456789abcdef OTP_OTP__MAX_ATTEMPTS=1000000
        OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 OTP_LIMITS__SMS_PER_HOUR=0)
names=(); ports=(); procs=()
start() { # name stderr-target env...
  local name=$1 err=$2; shift 2
  local port; port=$(free_port)
  env -u RUST_LOG "${common[@]}" OTP_SERVER__LISTEN="127.0.0.1:$port" "$@" "$BIN" >/dev/null 2>"$err" &
  local pid=$!
  pids+=("$pid"); names+=("$name"); ports+=("$port"); procs+=("$pid")
  for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$name did not start" >&2; exit 1
}
start "metrics off, log warn"        /dev/null OTP_METRICS__LISTEN= OTP_LOG__LEVEL=warn
start "metrics on, log warn"         /dev/null OTP_METRICS__LISTEN=127.0.0.1:0 OTP_LOG__LEVEL=warn
start "metrics off, log info (text)" /dev/null OTP_METRICS__LISTEN= OTP_LOG__LEVEL=info
start "metrics on, log info (text)"  /dev/null OTP_METRICS__LISTEN=127.0.0.1:0 OTP_LOG__LEVEL=info
start "metrics on, log info (json)"  /dev/null OTP_METRICS__LISTEN=127.0.0.1:0 OTP_LOG__LEVEL=info OTP_LOG__FORMAT=json

echo "== pre-sending 1000 codes (shared by all five through Redis)"
python3 - "${ports[0]}" <<'EOF'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(1000):
    c.request("POST", "/sms", json.dumps({"phone": "+7701%07d" % i, "password": "123456"}),
              {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A sum_rps sum_us p99s
measure() { # idx path script -> "rps p99 us/req"
  local i=$1 path=$2 script=$3 before after out reqs rps p99
  before=$(cpu_ticks "${procs[$i]}")
  if [ -n "$script" ]; then
    out=$(PHONES=1000 wrk -t2 -c64 -d"$DURATION" --latency -s "bench/$script" "http://127.0.0.1:${ports[$i]}$path")
  else
    out=$(wrk -t2 -c64 -d"$DURATION" --latency "http://127.0.0.1:${ports[$i]}$path")
  fi
  after=$(cpu_ticks "${procs[$i]}")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  # USER_HZ is 100: one tick is 10 ms.
  echo "$rps $p99 $(python3 -c "print(round(($after - $before) * 10000 / $reqs, 1))")"
}
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!names[@]}"; do
    read -r hrps _ hus < <(measure "$i" /healthz "")
    read -r crps cp99 cus < <(measure "$i" /sms/check check.lua)
    echo "round $round | ${names[$i]} | healthz $hrps req/s ${hus} µs | check $crps req/s p99 $cp99 ${cus} µs"
    sum_rps[$i,h]=$(python3 -c "print(${sum_rps[$i,h]:-0} + $hrps)")
    sum_rps[$i,c]=$(python3 -c "print(${sum_rps[$i,c]:-0} + $crps)")
    sum_us[$i,h]=$(python3 -c "print(${sum_us[$i,h]:-0} + $hus)")
    sum_us[$i,c]=$(python3 -c "print(${sum_us[$i,c]:-0} + $cus)")
    p99s[$i]="${p99s[$i]:-}${p99s[$i]:+ / }$cp99"
  done
done

echo
echo "| otpd | /healthz req/s | check req/s | check ÷ /healthz | check vs. metrics off, warn | check p99 (per round) | CPU µs per check | CPU µs per /healthz |"
echo "|---|---|---|---|---|---|---|---|"
base=$(python3 -c "print(${sum_rps[0,c]} / $ROUNDS)")
for i in "${!names[@]}"; do
  python3 - "${names[$i]}" "${sum_rps[$i,h]}" "${sum_rps[$i,c]}" "${sum_us[$i,c]}" "${sum_us[$i,h]}" "$ROUNDS" "$base" "${p99s[$i]}" <<'EOF'
import sys
name, h, c, cu, hu, n, base, p99 = sys.argv[1], *map(float, sys.argv[2:8]), sys.argv[8]
h, c, cu, hu = h / n, c / n, cu / n, hu / n
print(f"| {name} | {h:,.0f} | {c:,.0f} | {c / h:.2f}x | {100 * (c / base - 1):+.1f}% | {p99} | {cu:.1f} | {hu:.1f} |")
EOF
done

echo
echo "== a log reader that never reads: otpd (info, text) with stderr into a full pipe"
mkfifo "$work/stuck"
# A reader that never reads: once the 64 KiB pipe buffer is full, every
# write to it blocks.
sleep 100000 <"$work/stuck" &
pids+=($!)
metrics_port=$(free_port)
start "stuck stderr" "$work/stuck" OTP_METRICS__LISTEN="127.0.0.1:$metrics_port" OTP_LOG__LEVEL=info
i=$((${#names[@]} - 1))
read -r crps cp99 cus < <(measure "$i" /sms/check check.lua)
dropped=$(curl -fs "http://127.0.0.1:$metrics_port/metrics" | awk '/^otpd_log_lines_dropped_total/ {print $2}')
echo "check with stderr stuck: $crps req/s, p99 $cp99, $cus µs CPU per check; log lines dropped (otpd_log_lines_dropped_total): ${dropped:-?}"
