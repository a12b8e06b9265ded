#!/usr/bin/env bash
# Schema fuzzing: schemathesis with every check (--checks all) against
# openapi/openapi.yaml on a live otpd with Basic auth on (embedded store
# in a temp dir, dev sinks, loopback only). Passes only at 0 failures:
# no server error, no response that breaks the spec, no schema-valid
# request refused and no schema-invalid one accepted, auth enforced.
#   ./scripts/fuzz-api.sh            # default: 40 examples per operation
#   EXAMPLES=200 ./scripts/fuzz-api.sh
# scripts/schemathesis.toml and scripts/fuzz_hooks.py hold the settings:
# the phone and email formats no JSON Schema keyword can state, and 422
# (wrong password) as an accepted answer of a check.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${EXAMPLES:-40}"

if ! command -v schemathesis >/dev/null; then
  echo "== installing schemathesis"
  python3 -m pip install --quiet schemathesis
fi

cargo build -q -p otp-server
# Where cargo put it: CARGO_TARGET_DIR when set (a shared target dir).
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/otpd"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# An account sid as the user: the /v2 API (Twilio Verify compatible) takes
# the same pair as its AccountSid and AuthToken, so one --auth opens both.
user=AC$(python3 -c 'import secrets; print(secrets.token_hex(16))')
pass=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
# Limits off for the run: fuzzing sends thousands of requests to a few
# destinations, and 429s would hide everything behind them.
HTTP_AUTH_USERNAME="$user" HTTP_AUTH_PASSWORD="$pass" \
OTP_TWILIO_API__ACCOUNT_SID="$user" OTP_TWILIO_API__AUTH_TOKEN="$pass" \
OTP_SERVER__LISTEN="127.0.0.1:$port" OTP_METRICS__LISTEN=127.0.0.1:0 OTP_STORE__PATH="$work/otpd.redb" \
OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 OTP_LIMITS__USER_SENDS_PER_WINDOW=0 \
OTP_LIMITS__SMS_PER_HOUR=0 OTP_LIMITS__CALL_PER_HOUR=0 OTP_LIMITS__EMAIL_PER_HOUR=0 \
OTP_LIMITS__TELEGRAM_PER_HOUR=0 OTP_LIMITS__TARGET_FAILURES_PER_WINDOW=0 OTP_FRAUD__MODE=off \
  "$bin" >"$work/stdout.log" 2>"$work/stderr.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
ready=0
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
if [ "$ready" -ne 1 ]; then
  echo "otpd ($bin) did not answer /healthz within 10 s:" >&2
  cat "$work/stderr.log" >&2
  exit 1
fi

status=0
SCHEMATHESIS_HOOKS=scripts.fuzz_hooks PYTHONPATH=. \
schemathesis --config-file scripts/schemathesis.toml run openapi/openapi.yaml \
  --url "http://127.0.0.1:$port" \
  --auth "$user:$pass" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --seed "${SEED:-20261126}" \
  --no-color || status=$?
if grep -q "panicked" "$work/stderr.log"; then
  echo "otpd panicked during the run:" >&2
  grep -A5 panicked "$work/stderr.log" >&2
  exit 1
fi
exit $status
