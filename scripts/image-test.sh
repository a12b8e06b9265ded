#!/usr/bin/env bash
# Builds otpd's container image from the repository's Dockerfile and runs
# it, on a machine without a Docker daemon or an image registry:
#
# - buildah builds the Dockerfile (`--isolation chroot`, vfs storage, as
#   root) and `buildah run` starts commands in the image (`podman run`
#   cannot set RLIMIT_NPROC in this sandbox). Processes started that way
#   share the host's network and PID namespaces, so the server in the image
#   listens on the host and the test can signal it.
# - No registry serves debian:bookworm-slim or rust:1-bookworm, so the
#   runtime base is a stand-in made with mmdebstrap the way Debian's slim
#   image is made (minbase, no docs/man/locales, apt caches cleaned), and
#   the binary is a release build from this checkout, copied in through the
#   Dockerfile's `prebuilt` target (the runtime stage plus a binary). The
#   user, env, volume, signal and health check under test belong to the
#   runtime stage, which the real image shares.
#
# Then it checks, in the image, what an operator meets: `otpd --version`,
# the HEALTHCHECK command down (1) and up (0), the server as uid 10001 on
# 0.0.0.0:8080, /healthz, /docs, /openapi.json, a send to the dev outbox and
# its check, the store in the /var/lib/otpd volume and a second run of the
# image on that volume, SIGTERM draining an in-flight request and exiting 0,
# Basic auth (401), two containers sharing one Redis (compose.yaml's
# stateless fleet), the image's size (< 120 MB) and metadata.
#
# Usage: sudo ./scripts/image-test.sh
#   OTPD_BIN=path      test this release binary (default: cargo build
#                      --release --locked -p otp-server, then its output)
#   IMAGE_TEST_CACHE   where the stand-in base's rootfs is kept
#                      (default /var/cache/otpd-image-test)
# Exit status: 0 every check passed; 1 a check failed; 3 a tool is missing
# (the message says what to install); 4 not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

IMAGE=localhost/otpd:image-test
BASE=localhost/debian:bookworm-slim
# Bump when the stand-in's recipe below changes: a base with another
# recipe label is made again.
BASE_RECIPE=slim-1
CACHE=${IMAGE_TEST_CACHE:-/var/cache/otpd-image-test}
MAX_MB=120
PREFIX=otpd-image-test

say() { printf '\n== %s\n' "$*"; }
failures=0
checks=0
pass() { checks=$((checks + 1)); printf 'ok   %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL %s\n' "$*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
die() {
  printf 'FAIL %s\n' "$*"
  printf '\nimage test stopped after %d checks (%d failed) in %ds\n' \
    "$checks" "$((failures + 1))" "$((SECONDS - started))"
  exit 1
}

# ---- tools ----------------------------------------------------------------
missing=()
for tool in buildah podman mmdebstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "image test skipped: ${missing[*]} not installed." >&2
  echo "Install them (Debian/Ubuntu) with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y buildah podman mmdebstrap" >&2
  exit 3
fi
for tool in curl python3 ss redis-server; do
  if ! command -v "$tool" >/dev/null; then
    echo "image test skipped: $tool not installed (apt-get install -y curl python3 iproute2 redis-server)." >&2
    exit 3
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "image test needs root (buildah with chroot isolation and vfs storage): sudo $0" >&2
  exit 4
fi

bh() { buildah --storage-driver vfs "$@"; }
pm() { podman --storage-driver vfs "$@"; }

# One run at a time: they share the container store and the ports.
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9

tmp=$(mktemp -d /tmp/otpd-image-test.XXXXXX)
server_pids=() # otpd processes started here (host PIDs)
runner_pids=() # the `buildah run` processes that own them
gateway_pid=
redis_pid=
# descendants PID: the PIDs of its children, theirs, and so on.
descendants() {
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null || true)
  for k in $kids; do
    echo "$k"
    descendants "$k"
  done
}
cleanup() {
  # Best effort to the end: one failing step (no container to list) must
  # not leave the rest undone.
  set +e
  local pid left
  # Every process under a runner that is still there (the server, and a
  # runner stopped before its server was found), SIGTERM first.
  left=("${server_pids[@]}")
  for pid in "${runner_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && left+=($(descendants "$pid") "$pid")
  done
  for pid in "${left[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${runner_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; fi
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  bh containers --format '{{.ContainerName}}' 2>/dev/null | grep "^$PREFIX-" |
    while read -r c; do bh rm "$c" >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Containers left by a run that was killed (we hold the lock, so no other
# run owns them).
bh containers --format '{{.ContainerName}}' | grep "^$PREFIX-" |
  while read -r c; do bh rm "$c" >/dev/null; done || true

# ---- the binary -------------------------------------------------------------
if [ -n "${OTPD_BIN:-}" ]; then
  bin=$OTPD_BIN
  say "binary: $bin (OTPD_BIN)"
else
  command -v cargo >/dev/null || {
    echo "image test: cargo not found; install Rust or set OTPD_BIN to a release build of otpd" >&2
    exit 3
  }
  say "cargo build --release --locked -p otp-server"
  t=$SECONDS
  cargo build --release --locked -p otp-server
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bin=$target_dir/release/otpd
  echo "release build: $((SECONDS - t))s"
fi
[ -x "$bin" ] || die "no executable at $bin"

# ---- the stand-in for debian:bookworm-slim ----------------------------------
say "base image $BASE (stand-in, recipe $BASE_RECIPE)"
have_base=$(pm image inspect --format '{{index .Labels "otpd.image-test.base"}}' "$BASE" 2>/dev/null || true)
if [ "$have_base" = "$BASE_RECIPE" ]; then
  echo "present"
else
  rootfs=$CACHE/bookworm-$BASE_RECIPE.tar
  if [ ! -s "$rootfs" ]; then
    t=$SECONDS
    # What Debian's slim image adds to a minbase bootstrap (debuerreotype):
    # no docs, man pages or locales, and apt that keeps no caches.
    mkdir -p "$tmp/apt"
    cat >"$tmp/apt/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$tmp/apt/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$tmp/apt/docker-gzip-indexes"
    dpkgopts=()
    for p in man doc locale info groff lintian linda; do
      dpkgopts+=("--dpkgopt=path-exclude=/usr/share/$p/*")
    done
    dpkgopts+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    # merged-usr hook: the /usr merge without the usrmerge package (which
    # would pull in perl), as debootstrap does it.
    mmdebstrap --variant=minbase --format=tar \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      "${dpkgopts[@]}" \
      --customize-hook="cp $tmp/apt/docker-* \"\$1/etc/apt/apt.conf.d/\"" \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
      bookworm "$rootfs.partial" >"$tmp/mmdebstrap.log" 2>&1 ||
      { tail -20 "$tmp/mmdebstrap.log"; die "mmdebstrap failed"; }
    mv "$rootfs.partial" "$rootfs"
    echo "mmdebstrap: $((SECONDS - t))s"
  fi
  pm rmi -f "$BASE" >/dev/null 2>&1 || true
  pm import --quiet --change "LABEL otpd.image-test.base=$BASE_RECIPE" \
    "$rootfs" "$BASE" >/dev/null
  echo "imported $rootfs"
fi

# ---- build ------------------------------------------------------------------
say "buildah bud --target prebuilt (Dockerfile)"
mkdir -p "$tmp/otpd-bin"
cp "$bin" "$tmp/otpd-bin/otpd"
old_image=$(pm image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
t=$SECONDS
# docker format: the OCI image format has no HEALTHCHECK. --layers keeps
# the apt-get layer between runs. The context is the checkout (with its
# .dockerignore); the binary comes in through the named context otpd-bin.
if ! bh bud --isolation chroot --layers --format docker \
  --build-arg RUNTIME_IMAGE="$BASE" \
  --build-context otpd-bin="$tmp/otpd-bin" \
  --target prebuilt -t "$IMAGE" -f Dockerfile . >"$tmp/build.log" 2>&1; then
  tail -30 "$tmp/build.log"
  die "the image did not build"
fi
pass "the image builds from ./Dockerfile ($((SECONDS - t))s)"
new_image=$(pm image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
  pm rmi "$old_image" >/dev/null 2>&1 || true
fi

# ---- image metadata and size ------------------------------------------------
say "image metadata"
bh inspect --type image "$IMAGE" >"$tmp/inspect.json"
meta() { python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["Docker"]["config"]; print(json.dumps(eval(sys.argv[2], {"c": c})))' "$tmp/inspect.json" "$1"; }
mapfile -t entrypoint < <(python3 -c 'import json, sys; [print(a) for a in json.load(open(sys.argv[1]))["Docker"]["config"]["Entrypoint"]]' "$tmp/inspect.json")
mapfile -t healthcheck < <(python3 -c 'import json, sys; [print(a) for a in json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"][1:]]' "$tmp/inspect.json")
check "user is otpd: $(meta 'c.get("User")')" [ "$(meta 'c.get("User")')" = '"otpd"' ]
check "entrypoint is otpd: $(meta 'c.get("Entrypoint")')" [ "$(meta 'c.get("Entrypoint")')" = '["/usr/local/bin/otpd"]' ]
check "HEALTHCHECK runs otpd health: $(meta 'c.get("Healthcheck", {}).get("Test")')" \
  [ "$(meta 'c.get("Healthcheck", {}).get("Test")')" = '["CMD", "/usr/local/bin/otpd", "health"]' ]
check "STOPSIGNAL is SIGTERM (otpd drains on it)" [ "$(meta 'c.get("StopSignal")')" = '"SIGTERM"' ]
check "/var/lib/otpd is a volume" [ "$(meta '"/var/lib/otpd" in (c.get("Volumes") or {})')" = true ]
check "ports 8080 and 9464 exposed" [ "$(meta 'sorted(c.get("ExposedPorts") or {})')" = '["8080/tcp", "9464/tcp"]' ]
check "default env listens on 0.0.0.0:8080" [ "$(meta '"OTP_SERVER__LISTEN=0.0.0.0:8080" in c.get("Env", [])')" = true ]
check "label org.opencontainers.image.source is set (empty unless --build-arg SOURCE=...)" \
  [ "$(meta '"org.opencontainers.image.source" in (c.get("Labels") or {})')" = true ]
label_version=$(meta '(c.get("Labels") or {}).get("org.opencontainers.image.version")' | tr -d '"')

size=$(pm image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(pm image inspect --format '{{.Size}}' "$BASE")
bin_size=$(stat -c %s "$bin")
mb() { python3 -c "print(f'{$1 / 1e6:.1f}')"; }
echo "image size: $(mb "$size") MB (base $(mb "$base_size") MB, otpd binary $(mb "$bin_size") MB)"
check "image is under $MAX_MB MB: $(mb "$size") MB" [ "$size" -lt $((MAX_MB * 1000 * 1000)) ]

# ---- runs -------------------------------------------------------------------
# Ports: the image's defaults unless the host already uses them (the
# server shares the host's network).
port_free() { python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[1])))' "$1" 2>/dev/null; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=8080
metrics_port=9464
port_env=()
if ! port_free $port; then
  port=$(free_port)
  port_env+=(-e "OTP_SERVER__LISTEN=0.0.0.0:$port")
  echo "note: port 8080 is taken on this host; the runs listen on 0.0.0.0:$port"
fi
if ! port_free $metrics_port; then
  metrics_port=$(free_port)
  port_env+=(-e "OTP_METRICS__LISTEN=0.0.0.0:$metrics_port")
  echo "note: port 9464 is taken on this host; metrics listen on 0.0.0.0:$metrics_port"
fi
url=http://127.0.0.1:$port

n=0
# new_container: a fresh container from the image (what `docker run` makes).
new_container() {
  n=$((n + 1))
  container=$(bh from --quiet --name "$PREFIX-$n" "$IMAGE")
}
# in_container [buildah run options] CONTAINER -- COMMAND...: as the
# image's user unless --user says otherwise, with the runs' ports.
in_container() { bh run --isolation chroot "${port_env[@]}" "$@"; }
# start_server CONTAINER VOLUME NAME [-e K=V...]: runs the entrypoint in the
# background and waits until it answers; sets $otpd_pid and $runner_pid.
start_server() {
  local c=$1 vol=$2 name=$3
  shift 3
  bh run --isolation chroot "${port_env[@]}" -v "$vol:/var/lib/otpd" "$@" "$c" -- \
    "${entrypoint[@]}" >"$tmp/$name.log" 2>&1 &
  runner_pid=$!
  runner_pids+=("$runner_pid")
  otpd_pid=
  local pid
  for _ in $(seq 100); do
    # The otpd process among the runner's descendants.
    for pid in $(descendants "$runner_pid"); do
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = otpd ]; then otpd_pid=$pid; fi
    done
    if [ -n "$otpd_pid" ] && curl -fs -o /dev/null "$url/healthz"; then
      server_pids+=("$otpd_pid")
      return 0
    fi
    kill -0 "$runner_pid" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$tmp/$name.log"
  die "otpd ($name) did not answer $url/healthz within 10 s"
}
# stop_server NAME: SIGTERM, as `docker stop` sends it; sets $server_exit.
stop_server() {
  kill -TERM "$otpd_pid"
  server_exit=0
  wait "$runner_pid" || server_exit=$?
  local keep=()
  for p in "${server_pids[@]}"; do [ "$p" = "$otpd_pid" ] || keep+=("$p"); done
  server_pids=("${keep[@]}")
}
# http METHOD PATH [curl args...]: prints the body, then the status on its own line.
http() {
  local method=$1 path=$2
  shift 2
  curl -s -X "$method" -w '\n%{http_code}' "$@" "$url$path"
}
status_of() { tail -n1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }
json() { python3 -c 'import json, sys; print(eval(sys.argv[1], {"j": json.loads(sys.stdin.read())}))' "$1"; }
# A named volume starts as a copy of the image's directory (owner included).
new_volume() {
  local dir=$tmp/$1 owner
  mkdir -p "$dir"
  owner=$(in_container --user 0 "$container" -- stat -c %u:%g /var/lib/otpd)
  chown "$owner" "$dir"
  volume=$dir
}
send_sms() { # send_sms PHONE: sets $vrf_id and $code from the dev outbox
  local r
  r=$(http POST /sms -H 'Content-Type: application/json' -d "{\"phone\": \"$1\"}")
  [ "$(status_of "$r")" = 200 ] || { echo "POST /sms: $r"; return 1; }
  vrf_id=$(body_of "$r" | json 'j["id"]')
  r=$(http GET "/outbox/messages?channel=sms&to=${1#+}")
  code=$(body_of "$r" | json 'j[0]["code"]')
  [ -n "$code" ]
}
check_sms() { # check_sms PHONE CODE: 0 when approved
  local r
  r=$(http POST /sms/check -H 'Content-Type: application/json' -d "{\"phone\": \"$1\", \"password\": \"$2\"}")
  [ "$(status_of "$r")" = 200 ] && [ "$(body_of "$r" | json 'j["status"]')" = approved ]
}

say "run 1: a fresh volume"
new_container
c1=$container
version=$(in_container "$c1" -- "${entrypoint[@]}" --version) && pass "otpd --version: $version" ||
  fail "otpd --version exits 0"
check "the version label ($label_version) is the binary's version" [ "otpd $label_version" = "$version" ]
check "no toolchain or sources in the image (no cargo, rustc, /src)" \
  in_container "$c1" -- sh -c '! command -v cargo && ! command -v rustc && ! test -e /src'
health_exit=0
in_container "$c1" -- "${healthcheck[@]}" >/dev/null 2>&1 || health_exit=$?
check "HEALTHCHECK (otpd health) exits 1 while the server is down: $health_exit" [ "$health_exit" = 1 ]

new_volume vol
vol=$volume
start_server "$c1" "$vol" run1
uid=$(awk '/^Uid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$otpd_pid/status")
check "the server runs as uid 10001, not root: Uid $uid" [ "$uid" = 10001:10001:10001:10001 ]
listen=$(ss -Hltnp "sport = :$port" | awk '{print $4}' | sort -u)
check "it listens on 0.0.0.0:$port: $listen" [ "$listen" = "0.0.0.0:$port" ]
check "the listener is the otpd in the image (pid $otpd_pid)" grep -q "pid=$otpd_pid," <(ss -Hltnp "sport = :$port")
health_exit=0
in_container "$c1" -- "${healthcheck[@]}" >/dev/null 2>&1 || health_exit=$?
check "HEALTHCHECK (otpd health) exits 0 while it runs: $health_exit" [ "$health_exit" = 0 ]
r=$(http GET /healthz)
check "GET /healthz is 200" [ "$(status_of "$r")" = 200 ]
r=$(http GET /docs)
check "GET /docs is 200 (Swagger UI)" [ "$(status_of "$r")" = 200 ]
r=$(http GET /openapi.json)
ok=false
[ "$(status_of "$r")" = 200 ] && [ "$(body_of "$r" | json '"openapi" in j and "/sms" in j["paths"]')" = True ] && ok=true
check "GET /openapi.json is 200 with an OpenAPI document" $ok
if send_sms +77011234567; then
  pass "POST /sms answers $vrf_id; the dev outbox shows its code"
  first_id=$vrf_id
  check "POST /sms/check with the outbox's code is approved" check_sms +77011234567 "$code"
else
  fail "POST /sms and the dev outbox"
  first_id=none
fi
# A second code, left pending, for the next run on this volume to check.
if send_sms +77011234568; then pending_code=$code; else pending_code=none; fi
check "the embedded store is in the volume: /var/lib/otpd/otpd.redb" \
  in_container -v "$vol:/var/lib/otpd" "$c1" -- test -s /var/lib/otpd/otpd.redb
ok=false
[ "$(stat -c %u "$vol/otpd.redb")" = 10001 ] && [ "$(stat -c %u "$vol/secret")" = 10001 ] && ok=true
check "the store and the generated secret belong to uid 10001: $(cd "$vol" && stat -c '%n %u' -- * | tr '\n' ' ')" $ok
stop_server
check "SIGTERM stops it with exit 0: $server_exit" [ "$server_exit" = 0 ]

say "run 2: a new container on the same volume"
new_container
c2=$container
# A slow provider for calls: this gateway answers after 3 s, so a call is
# still in flight when SIGTERM arrives.
gw_port=$(free_port)
cat >"$tmp/gateway.py" <<'EOF'
import http.server, sys, time, pathlib
mark = pathlib.Path(sys.argv[2])
class Slow(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mark.touch()
        time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
EOF
python3 "$tmp/gateway.py" "$gw_port" "$tmp/gateway-called" &
gateway_pid=$!
start_server "$c2" "$vol" run2 \
  -e OTP_CALL__PROVIDER=http \
  -e "OTP_CALL__HTTP__URL=http://127.0.0.1:$gw_port/call" \
  -e 'OTP_CALL__HTTP__BODY={"to": "{phone}", "text": "{message}"}'
r=$(http GET "/verifications/$first_id")
ok=false
[ "$(status_of "$r")" = 200 ] && [ "$(body_of "$r" | json 'j["status"]')" = approved ] && ok=true
check "GET /verifications/$first_id shows run 1's verification, approved" $ok
check "run 1's pending code is approved here (store and secret kept in the volume)" \
  check_sms +77011234568 "$pending_code"
# Graceful stop: a send waits on the slow gateway while SIGTERM arrives.
curl -s -o "$tmp/inflight.body" -w '%{http_code}' -X POST "$url/call" \
  -H 'Content-Type: application/json' -d '{"phone": "+77011234569"}' >"$tmp/inflight.status" &
inflight_pid=$!
for _ in $(seq 50); do [ -e "$tmp/gateway-called" ] && break; sleep 0.1; done
[ -e "$tmp/gateway-called" ] || fail "the call reached the slow gateway"
t0=$(date +%s.%N)
kill -TERM "$otpd_pid"
sleep 0.5
refused=0
curl -s -o /dev/null --max-time 2 "$url/healthz" || refused=1
wait "$inflight_pid" || true
server_exit=0
wait "$runner_pid" || server_exit=$?
server_pids=()
drain=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
check "a new connection during the drain is refused" [ "$refused" = 1 ]
check "the call in flight at SIGTERM finishes: $(cat "$tmp/inflight.status") $(cat "$tmp/inflight.body")" \
  [ "$(cat "$tmp/inflight.status")" = 200 ]
check "then otpd exits 0 (after ${drain}s): $server_exit" [ "$server_exit" = 0 ]
check "its log says it drained" grep -q "draining in-flight requests" "$tmp/run2.log"
kill "$gateway_pid" 2>/dev/null || true
wait "$gateway_pid" 2>/dev/null || true
gateway_pid=

say "run 3: Basic auth on"
new_container
c3=$container
new_volume vol3
start_server "$c3" "$volume" run3 -e HTTP_AUTH_USERNAME=app -e HTTP_AUTH_PASSWORD=image-test-secret
r=$(http POST /sms -H 'Content-Type: application/json' -d '{"phone": "+77011234567"}')
check "POST /sms without credentials is 401" [ "$(status_of "$r")" = 401 ]
r=$(http POST /sms -u app:image-test-secret -H 'Content-Type: application/json' -d '{"phone": "+77011234567"}')
check "POST /sms with them is 200" [ "$(status_of "$r")" = 200 ]
r=$(http GET /healthz)
check "GET /healthz stays open (200)" [ "$(status_of "$r")" = 200 ]
health_exit=0
in_container -e HTTP_AUTH_USERNAME=app -e HTTP_AUTH_PASSWORD=image-test-secret "$c3" -- \
  "${healthcheck[@]}" >/dev/null 2>&1 || health_exit=$?
check "HEALTHCHECK still exits 0 with auth on: $health_exit" [ "$health_exit" = 0 ]
stop_server
check "SIGTERM stops it with exit 0: $server_exit" [ "$server_exit" = 0 ]

say "run 4: two containers on one Redis (deploy/compose.yaml's stateless fleet)"
# Like compose.yaml's otpd-1 and otpd-2: Redis store with a password, one
# shared secret; here on host ports, as these runs share the host network.
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --requirepass image-test-redis >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
  REDISCLI_AUTH=image-test-redis redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done
fleet=(-e OTP_STORE__KIND=redis -e "OTP_STORE__URL=redis://:image-test-redis@127.0.0.1:$redis_port"
  -e OTP_SECURITY__SECRET=image-test-shared-secret-0123456789)
declare -A fleet_url fleet_pid fleet_runner fleet_vol
for i in a b; do
  new_container
  new_volume "vol4$i"
  fleet_vol[$i]=$volume
  port_env=(-e "OTP_SERVER__LISTEN=0.0.0.0:$(free_port)" -e "OTP_METRICS__LISTEN=0.0.0.0:$(free_port)")
  url=http://127.0.0.1:${port_env[1]##*:}
  start_server "$container" "$volume" "run4$i" "${fleet[@]}"
  fleet_url[$i]=$url fleet_pid[$i]=$otpd_pid fleet_runner[$i]=$runner_pid
done
url=${fleet_url[a]}
if send_sms +77011234570; then
  pass "POST /sms through instance a answers $vrf_id"
  url=${fleet_url[b]}
  check "instance b approves the code a sent" check_sms +77011234570 "$code"
  r=$(http GET "/verifications/$vrf_id")
  ok=false
  [ "$(status_of "$r")" = 200 ] && [ "$(body_of "$r" | json 'j["status"]')" = approved ] && ok=true
  check "instance b shows the verification as approved" $ok
else
  fail "POST /sms through instance a"
fi
for i in a b; do
  otpd_pid=${fleet_pid[$i]} runner_pid=${fleet_runner[$i]}
  stop_server
  check "instance $i stops with exit 0 on SIGTERM: $server_exit" [ "$server_exit" = 0 ]
done
check "stateless: nothing written to either instance's volume" \
  [ -z "$(find "${fleet_vol[a]}" "${fleet_vol[b]}" -mindepth 1)" ]
kill "$redis_pid" 2>/dev/null || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=

printf '\nimage test: %d checks, %d failed, %ds (image %s MB)\n' \
  "$checks" "$failures" "$((SECONDS - started))" "$(mb "$size")"
[ "$failures" -eq 0 ]
