#!/usr/bin/env bash
# otpd benchmark: the real request paths, side by side in one run, on the
# Redis store and on the embedded store. One command:
#
#   flock /tmp/otpd-bench.lock ./bench/run.sh
#
# (the lock keeps two benchmarks on a shared machine from overlapping).
# Installs wrk and redis-server when missing, builds otpd (release), starts
# redis-server and two otpd processes (one per store), then runs with wrk,
# per store and round:
#   /healthz                  no IO: the ceiling to compare with
#   check, attempt counted    wrong password, otp.max_attempts = 1000000, so
#                             every request counts an attempt (422)
#   check, approved           pre-sent codes, each checked once right (200)
#   check, 404                phones that were never sent a code
#   send                      new phones, log sink (its stdout to /dev/null)
#   send by WhatsApp          the same on /whatsapp (binaries with the channel)
#   /v2 send, /v2 check       the same send and approving check through the
#                             Twilio Verify compatible API (binaries with
#                             it), each next to its native row on the same
#                             store, in the order A B B A, half a row each
# and reports per row: req/s, its ratio to /healthz, p50, p99, the status
# mix (counted by the wrk script, bench/otpd.lua), CPU µs per request of
# otpd, redis-server and wrk (from /proc/PID/stat and the shell's `times`),
# and Redis commands per request (INFO commandstats, with the ones scripts
# run); per store: cold start to a ready /healthz (median of five, on a
# fresh store) and peak RSS (VmHWM).
#
# Env: DURATION (seconds per row, default 10), CONNECTIONS (64),
# THREADS (2), ROUNDS (1 to 3; with more than one, each cell is the round
# with the median req/s), OUT (default bench/last-run.md), RUST_LOG (warn),
# OTPD_BIN (a prebuilt otpd to measure instead of building this tree, e.g.
# a copy of an older build for a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
# Set only around the A B B A pairs (half a row each).
unset ROW_SECS
OUT="${OUT:-bench/last-run.md}"
PHONES=1000
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 3 ] || { echo "ROUNDS must be 1 to 3" >&2; exit 2; }

need() {
  command -v "$1" >/dev/null && return
  echo "== installing $2"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need redis-server redis-server
need redis-cli redis-tools

if [ -n "${OTPD_BIN:-}" ]; then
  BIN=$(realpath "$OTPD_BIN")
  version="binary $OTPD_BIN"
else
  echo "== building otpd (release)"
  cargo build --release -q -p otp-server
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/otpd"
  version="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo ' with uncommitted changes')"
fi
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
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
commandstats() { redis-cli -p "$redis_port" info commandstats | tr -d '\r' | grep '^cmdstat_' || true; }

# Limits off: the load sends many codes to few destinations. Every wrong
# password counts an attempt: no code ever locks, so no check takes the
# cheaper locked path.
settings=(OTP_LIMITS__COOLDOWN_SECS=0 OTP_LIMITS__SENDS_PER_WINDOW=0 OTP_LIMITS__USER_SENDS_PER_WINDOW=0
          OTP_LIMITS__SMS_PER_HOUR=0 OTP_LIMITS__CALL_PER_HOUR=0 OTP_LIMITS__EMAIL_PER_HOUR=0
          OTP_LIMITS__TELEGRAM_PER_HOUR=0 OTP_LIMITS__TARGET_FAILURES_PER_WINDOW=0
          OTP_OTP__MAX_ATTEMPTS=1000000 RUST_LOG="${RUST_LOG:-warn}")
# WhatsApp's channel budget off too (an OTPD_BIN from before WhatsApp has
# no such key).
if grep -qa '^\[whatsapp\]' "$BIN"; then settings+=(OTP_LIMITS__WHATSAPP_PER_HOUR=0); fi
# Metrics on a free port, so runs never collide on the default one (an
# OTPD_BIN from before the metrics endpoint has no such key).
if grep -qa '^\[metrics\]' "$BIN"; then settings+=(OTP_METRICS__LISTEN=127.0.0.1:0); fi
# The send rows are SMS nobody enters: exactly what the fraud guard blocks.
# It stays on with a threshold no run reaches, so its per-send read and
# count are measured (an OTPD_BIN from before the guard has no such key).
if grep -qa '^\[fraud\]' "$BIN"; then settings+=(OTP_FRAUD__MIN_SENDS=4000000000); fi
# The Twilio-compatible API, where the binary has it: its rows run on a
# service made per store below.
TWILIO_SID=AC0123456789abcdef0123456789abcdef
TWILIO_TOKEN=bench-twilio-token
TWILIO_AUTH="Basic $(printf '%s:%s' "$TWILIO_SID" "$TWILIO_TOKEN" | base64 -w0)"
twilio=0
if grep -qa '^\[twilio_api\]' "$BIN"; then
  twilio=1
  settings+=(OTP_TWILIO_API__ACCOUNT_SID="$TWILIO_SID" OTP_TWILIO_API__AUTH_TOKEN="$TWILIO_TOKEN")
fi

declare -A port pid start_ms
start_otpd() { # store extra-env...
  local store=$1; shift
  port[$store]=$(free_port)
  local out
  out=$(env "${settings[@]}" OTP_SERVER__LISTEN="127.0.0.1:${port[$store]}" \
        OTP_STORE__PATH="$work/$store/otpd.redb" OTP_SECURITY__SECRET=bench-secret-0123456789abcdef "$@" \
        python3 bench/start_otpd.py "$BIN" "${port[$store]}" "$work/$store.err")
  read -r "pid[$store]" "start_ms[$store]" <<<"$out"
  pids+=("${pid[$store]}")
  echo "== otpd on $store: pid ${pid[$store]}, ready in ${start_ms[$store]} ms"
}
start_otpd embedded
start_otpd redis OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$redis_port"

# Production: a second otpd per store with the default limits (only the
# SMS channel cap raised, so every bucket is charged and the send rows
# still measure accepted sends) and a webhook sink, a loopback receiver
# that answers 204, so every send and check also writes its event and the
# dispatcher delivers it. Its rows are the `*-prod` stores.
python3 bench/webhook_sink.py "$work/sink.port" 2>"$work/sink.log" &
pids+=("$!")
for _ in $(seq 1 100); do [ -s "$work/sink.port" ] && break; sleep 0.05; done
cat >"$work/prod.toml" <<TOML
[[events.sinks]]
kind = "webhook"
name = "bench"
url = "http://127.0.0.1:$(cat "$work/sink.port")/events"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML
prod=(OTP_CONFIG="$work/prod.toml" OTP_LIMITS__COOLDOWN_SECS=30 OTP_LIMITS__SENDS_PER_WINDOW=5
      OTP_LIMITS__USER_SENDS_PER_WINDOW=10 OTP_LIMITS__SMS_PER_HOUR=1000000000
      OTP_LIMITS__TARGET_FAILURES_PER_WINDOW=10 OTP_OTP__MAX_ATTEMPTS=5)
start_otpd embedded-prod "${prod[@]}"
start_otpd redis-prod OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$redis_port" \
  OTP_STORE__KEY_PREFIX=prod "${prod[@]}"

# Cold start, five times per store on a fresh store folder (the embedded
# store creates its file and secret): the median, and all five.
declare -A cold
cold_start() { # store extra-env...
  local store=$1; shift
  local times=() p ms
  for i in 1 2 3 4 5; do
    local cport; cport=$(free_port)
    read -r p ms < <(env "${settings[@]}" OTP_SERVER__LISTEN="127.0.0.1:$cport" \
      OTP_STORE__PATH="$work/cold-$store-$i/otpd.redb" OTP_SECURITY__SECRET=bench-secret-0123456789abcdef "$@" \
      python3 bench/start_otpd.py "$BIN" "$cport" "$work/cold.err")
    kill "$p"
    pids+=("$p")
    times+=("$ms")
  done
  cold[$store]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)" ms (of ${times[*]})"
  echo "== cold start, $store: ${cold[$store]}"
}
cold_start embedded
cold_start redis OTP_STORE__KIND=redis OTP_STORE__URL="redis://127.0.0.1:$redis_port"

# Runs wrk with bench/otpd.lua; prints its RESULT line and leaves wrk's
# CPU seconds (user+sys) in $work/wrk.times.
wrk_run() { # store seconds env...
  local store=$1 secs=$2; shift 2
  ( env THREADS="$THREADS" PHONES="$PHONES" "$@" \
      wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" -s bench/otpd.lua "http://127.0.0.1:${port[$store]}" \
      >"$work/wrk.out" 2>&1
    times >"$work/wrk.times" )
  grep '^RESULT ' "$work/wrk.out" || { cat "$work/wrk.out" >&2; exit 1; }
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

rows=$work/rows.jsonl
row() { # round store mode env...
  local round=$1 store=$2 mode=$3; shift 3
  local o0 r0 c0 o1 r1 c1 result
  o0=$(ticks "${pid[$store]}"); r0=$(ticks "$redis_pid"); commandstats >"$work/cmd0"
  result=$(wrk_run "$store" "${ROW_SECS:-$DURATION}" MODE="$mode" "$@")
  o1=$(ticks "${pid[$store]}"); r1=$(ticks "$redis_pid"); commandstats >"$work/cmd1"
  python3 - "$round" "$store" "$mode" "$result" "$((o1 - o0))" "$((r1 - r0))" "$HZ" \
      "$work/wrk.times" "$work/cmd0" "$work/cmd1" >>"$rows" <<'EOF'
import json, re, sys
round_, store, mode, result, otpd_ticks, redis_ticks, hz, times, c0, c1 = sys.argv[1:]
f = dict(kv.split("=", 1) for kv in result.split()[1:])
def secs(t):
    m, s = re.fullmatch(r"(\d+)m([\d.]+)s", t).groups()
    return int(m) * 60 + float(s)
# `times` in the subshell: its own line, then its children's (wrk).
user, sys_ = open(times).read().split("\n")[1].split()
def calls(path):
    out = {}
    for line in open(path):
        m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
a, b = calls(c0), calls(c1)
commands = {k: n - a.get(k, 0) for k, n in b.items() if n - a.get(k, 0) > 0}
statuses = dict(s.split(":") for s in f["statuses"].split(",") if s)
print(json.dumps({
    "round": int(round_), "store": store, "mode": mode,
    "requests": int(f["requests"]), "duration_us": int(f["duration_us"]),
    "p50_us": int(f["p50_us"]), "p99_us": int(f["p99_us"]),
    "statuses": {k: int(v) for k, v in statuses.items()},
    "otpd_cpu_us": int(otpd_ticks) * 1e6 / int(hz),
    "redis_cpu_us": int(redis_ticks) * 1e6 / int(hz),
    "wrk_cpu_us": (secs(user) + secs(sys_)) * 1e6,
    "commands": commands,
}))
EOF
  local last; last=$(tail -n1 "$rows")
  python3 bench/report.py --line "$last"
}
rate() { # store mode round → req/s of that row
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["store"]==sys.argv[2] and r["mode"]==sys.argv[3] and r["round"]==int(sys.argv[4]):
        print(int(r["requests"]/r["duration_us"]*1e6))' "$rows" "$@"
}

# The requests of the row measured last.
last_requests() { tail -n1 "$rows" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }

# Folds the two halves of a row (round, store, mode) into one: requests,
# time, CPU, statuses and commands added up; p50 and p99 the worse half's.
merge_halves() { # round store mode
  python3 - "$rows" "$@" <<'EOF'
import json, sys
path, rnd, store, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(path) if l.strip()]
mine = [r for r in rows if (r["round"], r["store"], r["mode"]) == (rnd, store, mode)]
assert len(mine) == 2, f"{store}/{mode} round {rnd}: {len(mine)} halves"
a, b = mine
m = dict(a)
for k in ["requests", "duration_us", "otpd_cpu_us", "redis_cpu_us", "wrk_cpu_us"]:
    m[k] = a[k] + b[k]
for k in ["p50_us", "p99_us"]:
    m[k] = max(a[k], b[k])
for k in ["statuses", "commands"]:
    m[k] = {x: a[k].get(x, 0) + b[k].get(x, 0) for x in sorted(set(a[k]) | set(b[k]))}
with open(path, "w") as f:
    for r in rows:
        if r is not a and r is not b:
            f.write(json.dumps(r) + "\n")
    f.write(json.dumps(m) + "\n")
EOF
}

# Sends QUOTA codes per wrk thread (code 123456) under PREFIX from BASE;
# not measured. Stops when wrk has sent them all (the run then only GETs
# /healthz), so `secs` only needs to be long enough.
presend() { # store prefix base per-thread secs [mode env...]
  local store=$1 prefix=$2 base=$3 quota=$4 secs=$5 mode=${6:-presend} result sent
  shift $(( $# < 6 ? $# : 6 ))
  result=$(wrk_run "$store" "$secs" MODE="$mode" PREFIX="$prefix" BASE="$base" QUOTA="$quota" "$@")
  sent=$(field sent "$result")
  echo "   presend $store +$prefix: $sent of $((quota * THREADS)) codes sent"
}

echo "== pre-sending the $PHONES codes that the wrong-password checks hit"
for store in embedded redis; do presend "$store" 7701 0 $((PHONES / THREADS)) 3; done

# How many codes an approving-check row needs, and how long pre-sending
# them takes: an approving check writes, like a counted attempt or a
# send; take the faster of those two (`count_rate`, 0 where there is no
# count row), plus a margin. A row that still runs out shows 404s in its
# status mix (through /v2 three look-ups each: SMS, voice, WhatsApp).
codes_for() { # count_rate send_rate → "need secs"
  local count_rate=$1 send_rate=$2 need
  need=$(( (count_rate > send_rate ? count_rate : send_rate) * DURATION * 3 / 2 + 2000 ))
  [ "$need" -le 2900000 ] || need=2900000
  echo "$need $(( need * 8 / 5 / (send_rate > 0 ? send_rate : 1) + 3 ))"
}

# The approving-check row, on codes pre-sent for it.
approve_row() { # round store count_rate
  local round=$1 store=$2 need secs base
  read -r need secs < <(codes_for "$3" "$(rate "$store" send "$round")")
  base=$(( (round - 1) * 3000000 ))
  presend "$store" 7702 "$base" $(( (need + THREADS - 1) / THREADS )) "$secs"
  row "$round" "$store" approve BASE="$base"
}

# The approving check natively and through /v2 (codes pre-sent by the
# Twilio-compatible API: a /v2 check finds only its service's
# verifications; checked by To). Both sets of codes are pre-sent first,
# then the two rows run next to each other on the same store, A B B A,
# half a row each, folded by `merge_halves`.
declare -A va
check_pair() { # round store
  local round=$1 store=$2 need secs vsecs base per
  read -r need secs < <(codes_for "$(rate "$store" count "$round")" "$(rate "$store" send "$round")")
  read -r _ vsecs < <(codes_for "$(rate "$store" count "$round")" "$(rate "$store" vsend "$round")")
  base=$(( (round - 1) * 3000000 ))
  per=$(( (need + THREADS - 1) / THREADS ))
  presend "$store" 7702 "$base" "$per" "$secs"
  presend "$store" 7747 "$base" "$per" "$vsecs" vpresend VA="${va[$store]}" AUTH="$TWILIO_AUTH"
  # A B B A, half a row each: whatever drifts over the four (the store
  # grows, the machine's other load) weighs on both alike. Each second
  # half starts past the codes its first half used.
  local n1 n2 v=(VA="${va[$store]}" AUTH="$TWILIO_AUTH")
  ROW_SECS=$(( (DURATION + 1) / 2 ))
  row "$round" "$store" approve BASE="$base"; n1=$(last_requests)
  row "$round" "$store" vapprove BASE="$base" "${v[@]}"; n2=$(last_requests)
  row "$round" "$store" vapprove BASE=$(( base + n2 + n2 / 20 + 1000 )) "${v[@]}"
  row "$round" "$store" approve BASE=$(( base + n1 + n1 / 20 + 1000 ))
  ROW_SECS=
  merge_halves "$round" "$store" approve
  merge_halves "$round" "$store" vapprove
}
if [ "$twilio" = 1 ]; then
  for store in redis embedded; do
    va[$store]=$(curl -fsS -u "$TWILIO_SID:$TWILIO_TOKEN" -d FriendlyName=Bench -d CustomCodeEnabled=true \
      "http://127.0.0.1:${port[$store]}/v2/Services" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sid"])')
    echo "== /v2 service on $store: ${va[$store]}"
  done
fi

for round in $(seq 1 "$ROUNDS"); do
  for store in redis embedded; do
    echo "== round $round, $store store"
    row "$round" "$store" healthz
    row "$round" "$store" count
    row "$round" "$store" miss
    # Sends go to new phones each round (a send to a phone whose code is
    # still pending is another operation: the native send's replace, a
    # /v2 create's resend). The native and the /v2 send run next to each
    # other: every send leaves a record behind and the pre-sends for the
    # check rows leave thousands, so a row that ran later would measure
    # a bigger store.
    fresh=$(( (round - 1) * 3000000 ))
    if [ "$twilio" = 1 ]; then
      # A B B A, half a row each, as the checks (`check_pair`); the
      # second halves to phones of their own.
      v=(VA="${va[$store]}" AUTH="$TWILIO_AUTH")
      ROW_SECS=$(( (DURATION + 1) / 2 ))
      row "$round" "$store" send BASE="$fresh"
      row "$round" "$store" vsend BASE="$fresh" "${v[@]}"
      row "$round" "$store" vsend BASE=$(( fresh + 1000000 )) "${v[@]}"
      row "$round" "$store" send BASE=$(( fresh + 1000000 ))
      ROW_SECS=
      merge_halves "$round" "$store" send
      merge_halves "$round" "$store" vsend
    else
      row "$round" "$store" send BASE="$fresh"
    fi
    # WhatsApp's send (only where the binary has the channel).
    if grep -qa '^\[whatsapp\]' "$BIN"; then row "$round" "$store" wsend BASE="$fresh"; fi
    if [ "$twilio" = 1 ]; then
      check_pair "$round" "$store"
    else
      approve_row "$round" "$store" "$(rate "$store" count "$round")"
    fi
  done
  for store in redis-prod embedded-prod; do
    echo "== round $round, $store (default limits, webhook sink)"
    row "$round" "$store" healthz
    row "$round" "$store" send BASE=$(( (round - 1) * 3000000 ))
    approve_row "$round" "$store" 0
  done
done

meta=$work/meta.json
python3 - "$meta" <<EOF
import json, sys
json.dump({
    "rounds": $ROUNDS, "threads": $THREADS, "connections": $CONNECTIONS, "duration": $DURATION,
    "date": "$(date -u +%Y-%m-%d)",
    "machine": "$(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'))"
               ", $(uname -sr), redis $(redis-server --version | awk '{print $3}' | tr -d 'v='),"
               " otpd $version",
    "stores": {
        "embedded": {"start_ms": "${cold[embedded]}", "hwm_kb": $(status_kb "${pid[embedded]}" VmHWM), "rss_kb": $(status_kb "${pid[embedded]}" VmRSS)},
        "redis": {"start_ms": "${cold[redis]}", "hwm_kb": $(status_kb "${pid[redis]}" VmHWM), "rss_kb": $(status_kb "${pid[redis]}" VmRSS)},
        "embedded-prod": {"start_ms": "-", "hwm_kb": $(status_kb "${pid[embedded-prod]}" VmHWM), "rss_kb": $(status_kb "${pid[embedded-prod]}" VmRSS)},
        "redis-prod": {"start_ms": "-", "hwm_kb": $(status_kb "${pid[redis-prod]}" VmHWM), "rss_kb": $(status_kb "${pid[redis-prod]}" VmRSS)},
    },
}, open(sys.argv[1], "w"))
EOF
python3 bench/report.py "$rows" "$meta" | tee "$OUT"
echo
echo "(written to $OUT)"
