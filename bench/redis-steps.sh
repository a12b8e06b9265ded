#!/usr/bin/env bash
# Counts the Redis round trips of one send and one approving check, with
# `redis-cli monitor`: every command the client sent is a line, and the
# commands scripts run inside Redis are tagged `[0 lua]`, so the lines
# without that tag are round trips. Runs otpd (release, or OTPD_BIN) on a
# fresh redis-server with the default limits (the SMS channel cap raised,
# so all N sends are accepted) and the fraud guard on, without an event
# sink (the dispatcher's own polls are not per request), and a fraud
# threshold no run reaches (its block read and counts still run).
#
#   ./bench/redis-steps.sh            # N=20 sends and approving checks
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-20}"
if [ -n "${OTPD_BIN:-}" ]; then BIN=$(realpath "$OTPD_BIN"); else
  cargo build --release -q -p otp-server; BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/otpd"; fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done

oport=$(free_port)
env OTP_SERVER__LISTEN="127.0.0.1:$oport" OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$rport" \
  OTP_SECURITY__SECRET=bench-secret-0123456789abcdef OTP_METRICS__LISTEN="" RUST_LOG=warn \
  OTP_LIMITS__SMS_PER_HOUR=1000000 OTP_FRAUD__MIN_SENDS=1000000 \
  "$BIN" >/dev/null 2>"$work/otpd.err" &
pids+=("$!")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$oport/readyz" >/dev/null && break; sleep 0.05; done

api() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -X "$1" \
  "http://127.0.0.1:$oport$2" -d "$3"; }
# Warm up: the first calls load the scripts (SCRIPT LOAD after NOSCRIPT).
[ "$(api POST /sms '{"phone":"+77019999999","password":"123456"}')" = 200 ] || { cat "$work/otpd.err"; exit 1; }
[ "$(api GET /sms/check '{"phone":"+77019999999","password":"123456"}')" = 200 ] || exit 1

# Round trips in a monitor file: the lines not run by a script.
trips() { grep '^[0-9]' "$1" | grep -vc '\[0 lua\]' || true; }

measure() { # label method path body-format
  local label=$1 method=$2 path=$3 fmt=$4 codes="" t0 t1
  redis-cli -p "$rport" monitor >"$work/$label.mon" &
  local mon=$!
  sleep 0.3
  t0=$(date +%s%N)
  for i in $(seq 1 "$N"); do
    # shellcheck disable=SC2059
    codes+="$(api "$method" "$path" "$(printf "$fmt" "$i")")
"
  done
  t1=$(date +%s%N)
  sleep 0.3
  kill "$mon"; wait "$mon" 2>/dev/null || true
  # Background work (the sweeper) over as long with no requests.
  redis-cli -p "$rport" monitor >"$work/$label.idle" &
  mon=$!
  sleep "$(awk "BEGIN {print ($t1 - $t0) / 1e9 + 0.6}")"
  kill "$mon"; wait "$mon" 2>/dev/null || true
  local busy idle
  busy=$(trips "$work/$label.mon"); idle=$(trips "$work/$label.idle")
  echo "$label: $N requests ($(printf "$codes" | sort | uniq -c | awk 'NF {printf "%s×%s", $2, $1}')), $busy round trips, $idle in as long idle: $(awk "BEGIN {printf \"%.2f\", ($busy - $idle) / $N}") per request"
  # Each command with its first argument (a script's SHA1, shortened), so
  # background scripts (the sweeper's) tell apart from the request's.
  grep -v '\[0 lua\]' "$work/$label.mon" | grep '^[0-9]' | awk '{print $4, substr($5, 2, 8)}' \
    | tr -d '"' | sort | uniq -c | sed 's/^/    /'
}
measure send POST /sms '{"phone":"+7701000%04d","password":"123456"}'
measure check GET /sms/check '{"phone":"+7701000%04d","password":"123456"}'
