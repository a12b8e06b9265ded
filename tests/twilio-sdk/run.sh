#!/usr/bin/env bash
# The official Twilio SDKs (twilio on PyPI, twilio on npm) against otpd's
# /v2 Twilio Verify compatible API, with only the Verify base URL changed:
# sdk_test.py and sdk_test.mjs, each on the embedded store and on Redis.
#   ./tests/twilio-sdk/run.sh                      # the debug build
#   OTPD_BIN=target/release/otpd ./tests/twilio-sdk/run.sh
#   TWILIO_PY_SPEC='twilio==9.13.0' TWILIO_NODE_SPEC='twilio@6.3.1' ./tests/twilio-sdk/run.sh
# It does not build otpd (cargo build -p otp-server does). The SDKs go
# into a temporary venv and npm prefix, removed on exit with everything
# else the run started. Exits 0 without testing ("SKIP: ...") only when
# PyPI or npm cannot be reached; every other failure is fatal.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
bin="${OTPD_BIN:-${CARGO_TARGET_DIR:-target}/debug/otpd}"
py_spec="${TWILIO_PY_SPEC:-twilio}"
node_spec="${TWILIO_NODE_SPEC:-twilio}"

missing=0
need() { # command, how to get it
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "missing: $1 (install: $2)" >&2
    missing=1
  fi
}
need python3 "apt-get install python3 python3-venv"
need node "apt-get install nodejs (twilio-node needs Node.js 20 or later)"
need npm "apt-get install npm"
need redis-server "apt-get install redis-server"
need curl "apt-get install curl"
[ "$missing" -eq 0 ] || { echo "FAIL: tools missing, see above" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "FAIL: node $(node --version) is too old: twilio-node needs Node.js 20 or later" >&2
  exit 1
fi
if [ ! -x "$bin" ]; then
  echo "FAIL: no otpd binary at $bin: build it (cargo build -p otp-server) or set OTPD_BIN" >&2
  exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Loopback only: a proxy from the caller's environment must not see it
# (python's requests honours HTTP_PROXY; twilio-node sets proxy: false).
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
# Both SDKs rewrite the request host when these are set.
unset TWILIO_EDGE TWILIO_REGION

# True when an install's output says the registry could not be reached
# (DNS, refused, reset, timeout, unreachable network), not that it refused
# or broke the install.
unreachable() {
  grep -Eqi 'NewConnectionError|ConnectTimeoutError|ReadTimeoutError|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|No route to host|Connection refused|ProxyError|code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)|network request .* failed|request to .* failed, reason' "$1"
}

echo "== installing $py_spec (PyPI) and $node_spec (npm) into $tmp"
if ! python3 -m venv "$tmp/venv" >"$tmp/venv.log" 2>&1; then
  cat "$tmp/venv.log" >&2
  echo "FAIL: python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi
# Runs an install; on failure skips when the registry is unreachable,
# else fails with its log.
install_or_skip() { # log what command...
  local log=$1 what=$2
  shift 2
  "$@" >"$log" 2>&1 && return 0
  if unreachable "$log"; then
    tail -5 "$log" >&2
    echo "SKIP: cannot reach PyPI/npm ($what)"
    exit 0
  fi
  cat "$log" >&2
  echo "FAIL: $what failed" >&2
  exit 1
}
install_or_skip "$tmp/pip.log" "pip install $py_spec" \
  "$tmp/venv/bin/pip" install -q --disable-pip-version-check --retries 2 --timeout 30 "$py_spec"
install_or_skip "$tmp/npm.log" "npm install $node_spec" \
  npm install --prefix "$tmp/node" --no-audit --no-fund --loglevel=error "$node_spec"
echo "   twilio-python $("$tmp/venv/bin/python" -c 'import twilio; print(twilio.__version__)')," \
  "twilio-node $(node -p "require('$tmp/node/node_modules/twilio/package.json').version")"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# One account for the whole run: the /v2 API's AccountSid and AuthToken.
sid=AC$(python3 -c 'import secrets; print(secrets.token_hex(16))')
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

# otpd gets only the settings below: every OTP_* and HTTP_AUTH_* of the
# caller (a config file, native auth, ...) is dropped.
strip=()
while IFS= read -r var; do
  case "$var" in OTP_* | HTTP_AUTH_*) strip+=(-u "$var") ;; esac
done < <(compgen -e)

otpd_pid=""
otpd_dir=""
# start_otpd NAME [VAR=value ...]: otpd on a free port, up at /healthz.
start_otpd() {
  local name=$1
  shift
  otpd_dir="$tmp/$name"
  mkdir -p "$otpd_dir"
  port=$(free_port)
  env ${strip[@]+"${strip[@]}"} \
    OTP_SERVER__LISTEN="127.0.0.1:$port" OTP_METRICS__LISTEN=127.0.0.1:0 \
    OTP_STORE__PATH="$otpd_dir/otpd.redb" \
    OTP_TWILIO_API__ACCOUNT_SID="$sid" OTP_TWILIO_API__AUTH_TOKEN="$token" \
    OTP_LIMITS__COOLDOWN_SECS=0 \
    "$@" "$bin" >"$otpd_dir/stdout.log" 2>"$otpd_dir/stderr.log" &
  otpd_pid=$!
  pids+=("$otpd_pid")
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      echo "   otpd ($name store) at http://127.0.0.1:$port, pid $otpd_pid"
      return 0
    fi
    kill -0 "$otpd_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: otpd ($bin, $name store) did not answer /healthz within 10 s; its stderr:" >&2
  cat "$otpd_dir/stderr.log" >&2
  exit 1
}

stop_otpd() {
  kill "$otpd_pid" 2>/dev/null || true
  wait "$otpd_pid" 2>/dev/null || true
}

passed=0
failed=0
# run_sdks NAME: both SDK tests against the otpd just started.
run_sdks() {
  local name=$1 status
  for sdk in python node; do
    echo "== $sdk SDK, $name store"
    status=0
    if [ "$sdk" = python ]; then
      OTPD_URL="http://127.0.0.1:$port" TWILIO_ACCOUNT_SID="$sid" TWILIO_AUTH_TOKEN="$token" \
        "$tmp/venv/bin/python" "$here/sdk_test.py" || status=$?
    else
      OTPD_URL="http://127.0.0.1:$port" TWILIO_ACCOUNT_SID="$sid" TWILIO_AUTH_TOKEN="$token" \
        NODE_PATH="$tmp/node/node_modules" node "$here/sdk_test.mjs" || status=$?
    fi
    if [ "$status" -eq 0 ]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "-- $sdk SDK failed on the $name store (exit $status); otpd's stderr, last 40 lines:" >&2
      tail -40 "$otpd_dir/stderr.log" >&2
    fi
  done
  if grep -q panicked "$otpd_dir/stderr.log"; then
    echo "FAIL: otpd panicked on the $name store:" >&2
    grep -A5 panicked "$otpd_dir/stderr.log" >&2
    exit 1
  fi
}

# 1. The embedded store.
start_otpd embedded
run_sdks embedded
stop_otpd

# 2. Redis: a server of its own, without persistence, on a free port.
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --daemonize no \
  >"$tmp/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
redis_up=0
for _ in $(seq 1 100); do
  if python3 - "$rport" <<'EOF' 2>/dev/null; then
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
    redis_up=1
    break
  fi
  kill -0 "$redis_pid" 2>/dev/null || break
  sleep 0.1
done
if [ "$redis_up" -ne 1 ]; then
  echo "FAIL: redis-server did not answer PING on port $rport within 10 s:" >&2
  cat "$tmp/redis.log" >&2
  exit 1
fi
# otpd refuses to start on Redis without security.secret (README "Store").
start_otpd redis OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$rport" \
  OTP_SECURITY__SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
run_sdks redis
stop_otpd

echo "twilio-sdk: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
