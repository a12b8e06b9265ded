#!/usr/bin/env bash
# The test command of the README: installs what the suites need (when
# missing, idempotently), then runs every test in the workspace.
# Suites that need an external program fail loudly when it is missing;
# none of them skips.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Redis suites start their own redis-server processes on free ports.
if [ -d crates/otp-redis ] && ! command -v redis-server >/dev/null; then
  echo "== installing redis-server"
  apt_install redis-server
fi

# The SMTP suite receives mail with aiosmtpd on loopback.
if [ -d crates/otp-smtp ] && ! python3 -c "import aiosmtpd" 2>/dev/null; then
  echo "== installing aiosmtpd"
  python3 -m pip install --quiet aiosmtpd
fi

# The browser test drives Debian's chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver"
  apt_install chromium chromium-driver
fi

echo "== cargo test --workspace"
cargo test --workspace
