#!/usr/bin/env bash
# Checks deploy/ without a Docker daemon: compose.yaml against the Compose
# specification's JSON schema and against what the README promises
# (scripts/deploy_check.py), then promtool on the Prometheus config and
# rules that compose.yaml mounts. Installs PyYAML, jsonschema and promtool
# when missing (pip; Debian's prometheus package), like scripts/test.sh.
#
# deploy/compose-spec.json is schema/compose-spec.json of the Compose
# specification's repository (compose-spec/compose-spec), vendored; see
# deploy/compose-spec.NOTICE for its version and licence.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

if ! python3 -c "import yaml, jsonschema" 2>/dev/null; then
  echo "== installing PyYAML and jsonschema"
  python3 -m pip install --quiet PyYAML jsonschema
fi
if ! command -v promtool >/dev/null; then
  echo "== installing promtool (Debian package prometheus)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

echo "== deploy/compose.yaml (Compose schema and the fleet it describes)"
python3 scripts/deploy_check.py

echo "== promtool check config deploy/prometheus/prometheus.yml (and the rules it loads)"
promtool check config deploy/prometheus/prometheus.yml
echo "== promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml
