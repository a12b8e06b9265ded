"""Checks deploy/compose.yaml without a Docker daemon.

Run by scripts/deploy-check.sh. The Compose specification's JSON schema
(deploy/compose-spec.json) says whether Compose can read the file; the
checks after it say whether the fleet it describes is the one the README
promises: two stateless otpd instances on one Redis with one shared
secret, every secret from deploy/.env, a health check on every service,
Prometheus scraping every otpd instance with the project's rules, and
Grafana with the project's data source and dashboard. Paths inside the
containers are followed through the compose file's bind mounts to the
files in this repository, so a renamed file or mount fails here.
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures += 1
    return ok


# ${VAR}, ${VAR:?err}, ${VAR?err}, ${VAR:-default}, ${VAR-default}, $VAR, $$
VAR = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[?-])([^}]*))?\}|(\w+))")


class Unset(Exception):
    pass


def interpolate(value, env):
    """Compose's interpolation of one string (the subset this file uses)."""

    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        val = env.get(name)
        empty = val is None or (val == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and (val is None or empty):
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and (val is None or empty):
            return arg
        return val or ""

    return VAR.sub(one, value)


def walk(node, f):
    if isinstance(node, dict):
        return {k: walk(v, f) for k, v in node.items()}
    if isinstance(node, list):
        return [walk(v, f) for v in node]
    if isinstance(node, str):
        return f(node)
    return node


def variables(node):
    found = set()
    walk(node, lambda s: found.update(m.group(1) or m.group(4) for m in VAR.finditer(s) if m.group(0) != "$$"))
    return found


def env_file(path):
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, val = line.partition("=")
            env[key.strip()] = val.strip()
    return env


def mounts(service):
    """(host path, container path) of each bind mount, host paths resolved."""
    out = []
    for v in service.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith((".", "/")):
            out.append(((DEPLOY / src).resolve(), dst))
    return out


def host_path(service, inside):
    """The repository file a container path of SERVICE comes from, or None."""
    for src, dst in sorted(mounts(service), key=lambda m: -len(m[1])):
        if inside == dst:
            return src
        if inside.startswith(dst.rstrip("/") + "/"):
            return src / inside[len(dst.rstrip("/")) + 1 :]
    return None


def env_of(service):
    e = service.get("environment", {})
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return e


def main():
    raw = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    example = env_file(DEPLOY / ".env.example")

    used = variables(raw)
    check(used == set(example), f"compose.yaml uses exactly the variables of .env.example: {sorted(used)}")

    # Unfilled, as copied: Compose must refuse to start.
    refused = set()
    for name in example:
        try:
            walk(raw, lambda s: interpolate(s, {**{k: "x" * 32 for k in example}, name: ""}))
        except Unset:
            refused.add(name)
    check(refused == set(example), "an empty value in deploy/.env stops `docker compose up`: " + ", ".join(sorted(refused)))

    filled = {k: f"deploy-check-{k.lower()}-0123456789abcdef" for k in example}
    doc = walk(raw, lambda s: interpolate(s, filled))
    # Extension fields (x-...) are free-form; the schema allows them.
    schema = json.loads((DEPLOY / "compose-spec.json").read_text())
    # The file names its draft as https://json-schema.org/draft-07/schema,
    # which jsonschema does not look up by that spelling: pick by name.
    drafts = {"draft-07": jsonschema.Draft7Validator, "2019-09": jsonschema.Draft201909Validator}
    cls = next(v for k, v in drafts.items() if k in schema["$schema"])
    cls.check_schema(schema)
    validator = cls(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        print(f"     at {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
    check(not errors, f"compose.yaml is valid against the Compose specification's schema ({schema.get('$schema')})")

    services = doc["services"]
    for name, s in services.items():
        test = (s.get("healthcheck") or {}).get("test")
        check(bool(test) and not s["healthcheck"].get("disable"), f"service {name} has a health check: {test}")

    otpd = {n: s for n, s in services.items() if (s.get("build") or {}).get("context")}
    for n, s in otpd.items():
        b = s["build"]
        check((DEPLOY / b["context"]).resolve() == ROOT and (ROOT / b.get("dockerfile", "Dockerfile")).is_file(),
              f"{n} is built from the repository's Dockerfile")
    check(len(otpd) >= 2, f"at least two otpd instances: {sorted(otpd)}")
    envs = {n: env_of(s) for n, s in otpd.items()}
    check(all(e.get("OTP_STORE__KIND") == "redis" for e in envs.values()), "every otpd instance uses the Redis store")
    secrets = {e.get("OTP_SECURITY__SECRET") for e in envs.values()}
    check(len(secrets) == 1 and len(next(iter(secrets)) or "") >= 16, "every otpd instance has the same security.secret")
    check(all(e.get("HTTP_AUTH_USERNAME") and e.get("HTTP_AUTH_PASSWORD") for e in envs.values()),
          "Basic auth is on for every otpd instance")
    for n, e in envs.items():
        m = re.match(r"rediss?://(?::([^@]*)@)?([^:/]+):(\d+)", e.get("OTP_STORE__URL", ""))
        host = m and m.group(2)
        redis = services.get(host or "", {})
        shared = set(redis.get("networks", ["default"])) & set(otpd[n].get("networks", ["default"]))
        check(bool(m) and "redis" in redis.get("image", "") and bool(shared),
              f"{n}'s store URL names the redis service on a network they share: {host} {sorted(shared)}")
        pw = m and m.group(1)
        check(pw is not None and pw in redis.get("command", []), f"{n} uses the password Redis requires")

    prom = next((s for s in services.values() if "prometheus" in s.get("image", "")), None)
    if check(prom is not None, "a Prometheus service"):
        flag = next(a for a in prom["command"] if a.startswith("--config.file="))
        cfg_path = host_path(prom, flag.split("=", 1)[1])
        check(cfg_path == DEPLOY / "prometheus" / "prometheus.yml",
              f"Prometheus reads deploy/prometheus/prometheus.yml: {cfg_path}")
        cfg = yaml.safe_load(cfg_path.read_text())
        job = next((j for j in cfg["scrape_configs"] if j["job_name"] == "otpd"), None)
        targets = {t for sc in (job or {}).get("static_configs", []) for t in sc["targets"]}
        want = {f"{n}:{e['OTP_METRICS__LISTEN'].rsplit(':', 1)[1]}" for n, e in envs.items()}
        check(targets == want, f"job otpd scrapes every instance's metrics listener: {sorted(targets)}")
        rules = [(cfg_path.parent / r).resolve() for r in cfg.get("rule_files", [])]
        check(DEPLOY / "prometheus" / "alerts.yml" in rules, "Prometheus loads deploy/prometheus/alerts.yml")
        prom_name = next(n for n, s in services.items() if s is prom)

    graf = next((s for s in services.values() if "grafana" in s.get("image", "")), None)
    if check(graf is not None, "a Grafana service"):
        prov = host_path(graf, "/etc/grafana/provisioning")
        sources = [d for f in sorted((prov / "datasources").glob("*.yml")) for d in yaml.safe_load(f.read_text())["datasources"]]
        check(any(d["type"] == "prometheus" and d["url"] == f"http://{prom_name}:9090" and d.get("isDefault") for d in sources),
              f"Grafana's default data source is that Prometheus: {[d['url'] for d in sources]}")
        providers = [p for f in sorted((prov / "dashboards").glob("*.yml")) for p in yaml.safe_load(f.read_text())["providers"]]
        dashboards = [host_path(graf, p["options"]["path"].rstrip("/") + "/otpd.json") for p in providers]
        check(DEPLOY / "grafana" / "otpd.json" in dashboards, "Grafana's dashboard provider loads deploy/grafana/otpd.json")

    for n, s in services.items():
        for src, dst in mounts(s):
            check(src.exists(), f"{n} mounts {src.relative_to(ROOT)} (exists) at {dst}")

    # The image side of the same fleet.
    dockerfile = (ROOT / "Dockerfile").read_text()
    crates = sorted(p.parent.name for p in ROOT.glob("crates/*/Cargo.toml"))
    listed = set(re.findall(r"^COPY crates/([\w-]+)/Cargo.toml ", dockerfile, re.M))
    check(set(crates) == listed, "the Dockerfile's dependency layer copies every crate's Cargo.toml"
          + ("" if set(crates) == listed else f": missing {sorted(set(crates) - listed)}, extra {sorted(listed - set(crates))}"))
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    check({"target/", ".git", "deploy/.env"} <= ignored, ".dockerignore keeps target/, .git and deploy/.env out of the build context")

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
