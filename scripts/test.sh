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

# The events suites verify every webhook signature with the Standard
# Webhooks reference library, not only with otpd's own code.
if ! python3 -c "import standardwebhooks" 2>/dev/null; then
  echo "== installing standardwebhooks"
  python3 -m pip install --quiet standardwebhooks
fi

# The browser test drives Debian's chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver"
  apt_install chromium chromium-driver
fi

# The observability suite lints a live scrape and checks deploy/ with
# promtool (Debian's prometheus package ships it), and reads the scrape
# with the Prometheus project's own Python parser.
if ! command -v promtool >/dev/null; then
  echo "== installing promtool (Debian package prometheus)"
  apt_install --no-install-recommends prometheus
fi
command -v promtool >/dev/null || { echo "promtool is missing after installing prometheus" >&2; exit 1; }
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "== installing prometheus_client"
  python3 -m pip install --quiet prometheus_client
fi
python3 -c "import prometheus_client" || { echo "python3 cannot import prometheus_client" >&2; exit 1; }

echo "== promtool check rules / test rules (deploy/prometheus)"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

# The Twilio SDK suite drives the binary with twilio-node, which needs
# Node.js and npm (and python3-venv for twilio-python's venv).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "== installing nodejs and npm"
  apt_install nodejs npm
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "== installing python3-venv"
  apt_install python3-venv
fi

echo "== cargo test --workspace"
cargo test --workspace

# The official Twilio SDKs (PyPI and npm) against the real binary's /v2
# API, on the embedded store and on Redis.
echo "== Twilio SDKs against otpd (tests/twilio-sdk)"
cargo build -q -p otp-server
./tests/twilio-sdk/run.sh
