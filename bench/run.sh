#!/usr/bin/env bash
# otpd benchmark: drives otpd over loopback with wrk and writes
# bench/RESULTS.md. One command: ./bench/run.sh
# Measures in one run: /healthz (the no-IO ceiling), check on the Redis
# store, check on the embedded store, and send with the log sink.
# Env: DURATION (default 10s), CONNECTIONS (64), THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"

need() { command -v "$1" >/dev/null || { echo "== installing $2"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need redis-server redis-server

echo "== building otpd (release)"
cargo build --release -q -p otp-server
BIN=target/release/otpd
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "otpd on $1 did not start" >&2; cat "$work"/*.err >&2; exit 1; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Limits off: the load sends thousands of requests to few destinations.
limits=(OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 OTP_LIMITS__USER_SENDS_PER_WINDOW=0
        OTP_LIMITS__SMS_PER_HOUR=0 OTP_LIMITS__CALL_PER_HOUR=0 OTP_LIMITS__EMAIL_PER_HOUR=0
        OTP_LIMITS__TELEGRAM_PER_HOUR=0 OTP_LIMITS__TARGET_FAILURES_PER_WINDOW=0 RUST_LOG=warn)

start_otpd() { # name port extra-env...
  local name=$1 port=$2; shift 2
  env "${limits[@]}" OTP_SERVER__LISTEN="127.0.0.1:$port" OTP_METRICS__LISTEN=127.0.0.1:0 OTP_STORE__PATH="$work/$name.redb" \
      OTP_SECURITY__SECRET=bench-secret-0123456789abcdef "$@" \
      "$BIN" >/dev/null 2>"$work/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
  wait_http "$port"
}

emb_port=$(free_port); start_otpd embedded "$emb_port"
red_port=$(free_port); start_otpd redis "$red_port" OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$redis_port"

PHONES=1000
echo "== pre-sending $PHONES codes to each store"
for port in "$emb_port" "$red_port"; do
  for i in $(seq 0 $((PHONES - 1))); do printf '{"phone":"+7701%07d","password":"123456"}\n' "$i"; done |
    xargs -P 8 -I{} curl -s -o /dev/null -X POST "http://127.0.0.1:$port/sms" -H 'Content-Type: application/json' -d {}
done

results=()
run() { # label port script path
  local label=$1 port=$2 script=$3 path=$4
  echo "== $label"
  local out
  if [ -n "$script" ]; then
    out=$(PHONES=$PHONES wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "bench/$script" "http://127.0.0.1:$port$path")
  else
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port$path")
  fi
  echo "$out" | sed 's/^/    /'
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  results+=("$label|$rps|$p50|$p99|${non2xx:-0}")
}

run "healthz (no IO, ceiling)" "$emb_port" "" /healthz
run "check, Redis store" "$red_port" check.lua /sms/check
run "check, embedded store" "$emb_port" check.lua /sms/check
run "send, log sink, Redis store" "$red_port" send.lua /sms
run "send, log sink, embedded store" "$emb_port" send.lua /sms

rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_emb=$(rss_kb "$pid_embedded"); rss_red=$(rss_kb "$pid_redis")

ceiling=$(echo "${results[0]}" | cut -d'|' -f2)
{
  echo "# otpd benchmark results"
  echo
  echo "Measured by \`./bench/run.sh\` (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, loopback; wrk and otpd share the machine) on $(date -u +%Y-%m-%d)."
  echo
  echo "Machine: $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), $(redis-server --version | awk '{print $3}' | tr -d 'v=')."
  echo
  echo "| workload | req/s | p50 | p99 | non-2xx | req/s vs /healthz |"
  echo "|---|---|---|---|---|---|"
  for r in "${results[@]}"; do
    IFS='|' read -r label rps p50 p99 non2xx <<<"$r"
    ratio=$(python3 -c "print(f'{float(\"$rps\")/float(\"$ceiling\"):.2f}')")
    echo "| $label | $rps | $p50 | $p99 | $non2xx | ${ratio}x |"
  done
  echo
  echo "Peak RSS (VmHWM) after the whole run: embedded otpd $((rss_emb / 1024)) MB, Redis otpd $((rss_red / 1024)) MB."
  echo
  echo "Checks use a wrong password on 1000 pre-sent phones, so every request runs the full atomic check (count the attempt, lock at the limit): non-2xx is expected there (422, then 429)."
  if [ -f bench/notes.md ]; then echo; cat bench/notes.md; fi
} > bench/RESULTS.md
echo
cat bench/RESULTS.md
