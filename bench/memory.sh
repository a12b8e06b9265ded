#!/usr/bin/env bash
# What holds otpd's memory on the embedded store (issue 19, item 5): one
# otpd with the benchmark's settings (limits off, log sink), DURATION
# seconds of sends to new phones (wrk -t2 -c64, bench/send.lua), then its
# status (VmHWM, RssAnon, RssFile) and its largest mappings by Rss from
# /proc/PID/smaps. With HEAPTRACK=1 it runs under heaptrack instead and
# prints the peak heap and its largest consumers (heaptrack slows otpd
# about 4x, so its load is lighter).
#
#   flock /tmp/otpd-bench.lock ./bench/memory.sh
#
# Env: DURATION (10), OTPD_BIN (a prebuilt otpd; else this tree, release),
# HEAPTRACK (0), and any OTP_* key passes through (OTP_STORE__CACHE_SIZE_MB,
# MALLOC_ARENA_MAX, …).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -n "${OTPD_BIN:-}" ]; then BIN=$(realpath "$OTPD_BIN"); else
  cargo build --release -q -p otp-server
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/otpd"
fi
work=$(mktemp -d)
trap 'pkill -f -- "$BIN" 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
run="$BIN"
if [ "${HEAPTRACK:-0}" = 1 ]; then
  command -v heaptrack >/dev/null || { apt-get update -qq && apt-get install -y -qq heaptrack >/dev/null; }
  printf '#!/bin/sh\nexec heaptrack -o %s/otpd %s\n' "$work" "$BIN" >"$work/run"
  chmod +x "$work/run"
  run="$work/run"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
read -r _ ms < <(env OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 \
  OTP_LIMITS__USER_SENDS_PER_WINDOW=0 OTP_LIMITS__SMS_PER_HOUR=0 OTP_LIMITS__CALL_PER_HOUR=0 \
  OTP_LIMITS__EMAIL_PER_HOUR=0 OTP_LIMITS__TELEGRAM_PER_HOUR=0 OTP_LIMITS__WHATSAPP_PER_HOUR=0 \
  OTP_LIMITS__TARGET_FAILURES_PER_WINDOW=0 OTP_FRAUD__MIN_SENDS=4000000000 \
  OTP_METRICS__LISTEN=127.0.0.1:0 RUST_LOG="${RUST_LOG:-warn}" \
  OTP_SERVER__LISTEN="127.0.0.1:$port" OTP_STORE__PATH="$work/otpd.redb" \
  OTP_SECURITY__SECRET=bench-secret-0123456789abcdef \
  python3 bench/start_otpd.py "$run" "$port" "$work/err")
pid=$(pgrep -f -n -- "^$BIN")
echo "== otpd pid $pid, ready in $ms ms"
grep -E '^(VmRSS|RssAnon|RssFile):' "/proc/$pid/status" | sed 's/^/   idle /'
wrk -t2 -c64 -d"${DURATION}s" -s bench/send.lua "http://127.0.0.1:$port" | grep -E 'Requests/sec|Non-2xx' | sed 's/^/   /'
grep -E '^(VmHWM|VmRSS|RssAnon|RssFile|Threads):' "/proc/$pid/status" | sed 's/^/   after /'
echo "   the store file: $(du -h "$work/otpd.redb" | cut -f1)"
echo "== largest mappings by Rss"
awk '/^[0-9a-f]+-[0-9a-f]+ /{n=$6; if (n == "") n="[anon]"} /^Rss:/{r[n]+=$2}
     END{for (n in r) if (r[n] > 300) printf "   %6.1f MB %s\n", r[n]/1024, n}' "/proc/$pid/smaps" | sort -rn | head -8
if [ "${HEAPTRACK:-0}" = 1 ]; then
  kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; sleep 1
  echo "== heaptrack"
  heaptrack_print "$work"/otpd.*zst 2>/dev/null | grep -E '^peak heap memory|^peak RSS'
  heaptrack_print "$work"/otpd.*zst 2>/dev/null | awk '/PEAK MEMORY CONSUMERS/{p=1} /MOST TEMPORARY/{p=0} p' |
    awk '/peak memory consumed/{size=$1; getline; print "   " size "  " $1}' | cut -c1-150 | head -10
fi
