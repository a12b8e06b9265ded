#!/usr/bin/env bash
# Does the WhatsApp send cost more than the SMS send, or does the later
# row pay for a store the earlier one grew? On one fresh embedded otpd
# (limits off, log sink, as bench/run.sh sets it), runs the send rows in
# the order ORDER (default "wsend send wsend send"), 8 s each, and prints
# each row's req/s.
#
#   flock /tmp/otpd-bench.lock ./bench/send-order.sh
#
# Env: OTPD_BIN (default: build this tree, release), ORDER, SECS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
ORDER="${ORDER:-wsend send wsend send}"
SECS="${SECS:-8}"
if [ -n "${OTPD_BIN:-}" ]; then
  BIN=$(realpath "$OTPD_BIN")
else
  cargo build --release -q -p otp-server
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/otpd"
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 OTP_LIMITS__USER_SENDS_PER_WINDOW=0 \
  OTP_LIMITS__SMS_PER_HOUR=0 OTP_LIMITS__WHATSAPP_PER_HOUR=0 OTP_OTP__MAX_ATTEMPTS=1000000 \
  OTP_FRAUD__MIN_SENDS=4000000000 OTP_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn \
  OTP_STORE__PATH="$work/otpd.redb" OTP_SERVER__LISTEN="127.0.0.1:$port" \
  OTP_SECURITY__SECRET=bench-secret-0123456789abcdef \
  "$BIN" >/dev/null 2>"$work/otpd.err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
for mode in $ORDER; do
  rate=$(MODE="$mode" THREADS=2 PHONES=1000 wrk -t2 -c64 -d"${SECS}s" -s bench/otpd.lua \
           "http://127.0.0.1:$port" | sed -n 's/^Requests\/sec: *//p')
  echo "$mode $rate req/s"
done
