"""Turns the rows run.sh measured (one JSON object per line) into the
markdown that run.sh prints and writes.

Usage: report.py ROWS_FILE META_FILE, or report.py --line ROW_JSON
"""

import json
import sys
from collections import defaultdict

if sys.argv[1] == "--line":
    # One measured row, for run.sh's progress output.
    r = json.loads(sys.argv[2])
    rps = r["requests"] / r["duration_us"] * 1e6
    print(
        f"   {r['store']:8} {r['mode']:8} {rps:9.0f} req/s  p99 {r['p99_us'] / 1000:6.2f} ms"
        f"  {r['statuses']}  otpd {r['otpd_cpu_us'] / r['requests']:.1f} µs/req"
    )
    sys.exit(0)

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
meta = json.load(open(sys.argv[2]))

LABELS = {
    "healthz": "`/healthz` (no IO, the ceiling)",
    "count": "check, wrong password, attempt counted (422)",
    "approve": "check, right password, code consumed (200)",
    "miss": "check, no code for the phone (404)",
    "send": "send, new phone, log sink (200)",
    "wsend": "send by WhatsApp, new phone, log sink (200)",
    "vsend": "send through `/v2` (Twilio Verify compatible), new phone (201)",
    "vapprove": "check through `/v2`, right code, by `To` (200 approved)",
}
# The production instances: default limits (the SMS channel cap raised so
# sends are accepted) and a webhook sink answering 204.
PROD_LABELS = {
    "healthz": LABELS["healthz"],
    "approve": "check, right password, code consumed (200), its event delivered",
    "send": "send, new phone, every bucket charged, its event delivered (200)",
}
ORDER = ["healthz", "count", "approve", "miss", "send", "wsend", "vsend", "vapprove"]


def ms(us):
    return f"{us / 1000:.2f} ms"


def median_row(group):
    """The round whose ratio to /healthz (of the same store and round) is
    the median, so every column comes from one real run, and the ratio
    compares rows that ran minutes apart, not a row with another round's
    ceiling. Other load on the machine moves both alike."""
    ordered = sorted(group, key=lambda r: r["ratio"])
    return ordered[(len(ordered) - 1) // 2]


by_key = defaultdict(list)
for r in rows:
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["cpu"] = r["otpd_cpu_us"] / r["requests"]
    by_key[(r["store"], r["mode"])].append(r)
ceiling = {
    (r["store"], r["round"]): r for r in rows if r["mode"] == "healthz"
}
for r in rows:
    base = ceiling.get((r["store"], r["round"]))
    r["ratio"] = r["rps"] / base["rps"] if base else 0.0
    r["cpu_ratio"] = r["cpu"] / base["cpu"] if base else 0.0

out = []
rounds = meta["rounds"]
out.append(
    f"wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration']}s per row, "
    f"{rounds} round(s), rows interleaved"
    + (
        " (each row: the round with the median ratio to that round's `/healthz`)"
        if rounds > 1
        else ""
    )
    + f"; {meta['date']}; {meta['machine']}."
)
out.append("")
out.append(
    "| store | workload | req/s | ÷ `/healthz` | p50 | p99 | status mix | "
    "otpd CPU µs/req | ÷ `/healthz` CPU | redis-server µs/req | wrk µs/req | Redis commands/req (with those its scripts run) |"
)
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
STORES = ["redis", "embedded", "redis-prod", "embedded-prod"]
for store in STORES:
    for mode in ORDER:
        group = by_key.get((store, mode))
        if not group:
            continue
        r = median_row(group) if mode != "healthz" else sorted(
            group, key=lambda r: r["rps"])[(len(group) - 1) // 2]
        ratio = f"{r['ratio']:.2f}×"
        cpu = r["cpu"]
        cpu_ratio = f"{r['cpu_ratio']:.1f}×"
        redis_cpu = (
            f"{r['redis_cpu_us'] / r['requests']:.1f}" if store.startswith("redis") else "-"
        )
        wrk_cpu = f"{r['wrk_cpu_us'] / r['requests']:.1f}"
        if store.startswith("redis") and r["commands"]:
            cmds = ", ".join(
                f"{name} {n / r['requests']:.2f}"
                for name, n in sorted(r["commands"].items(), key=lambda kv: -kv[1])
                if n / r["requests"] >= 0.005
            )
        else:
            cmds = "-"
        mix = " ".join(f"{s}×{n}" for s, n in r["statuses"].items())
        out.append(
            f"| {store} | {(PROD_LABELS if store.endswith('-prod') else LABELS)[mode]} | {r['rps']:,.0f} | {ratio} | {ms(r['p50_us'])} | "
            f"{ms(r['p99_us'])} | {mix} | {cpu:.1f} | {cpu_ratio} | {redis_cpu} | {wrk_cpu} | {cmds} |"
        )
out.append("")
for store in STORES:
    s = meta["stores"].get(store)
    if s:
        start = (
            f"cold start to a ready `/healthz` {s['start_ms']}; "
            if s["start_ms"] != "-"
            else ""
        )
        out.append(
            f"- {store}: {start}"
            f"peak RSS (VmHWM) {s['hwm_kb'] / 1024:.1f} MB over all its rows "
            f"(RSS after the run {s['rss_kb'] / 1024:.1f} MB)."
        )
if rounds > 1:
    spread = []
    for (store, mode), group in sorted(by_key.items()):
        rps = [r["rps"] for r in group]
        ratios = [r["ratio"] for r in group]
        spread.append(
            f"{store}/{mode} {min(rps):,.0f}–{max(rps):,.0f} req/s"
            + (f" ({min(ratios):.2f}–{max(ratios):.2f}×)" if mode != "healthz" else "")
        )
    out.append("- range over the rounds: " + "; ".join(spread) + ".")
# The /v2 rows against the native ones of the same store and round: what
# the Twilio-compatible API costs over the native one on the same run.
pairs = [("send", "vsend", "send"), ("approving check", "vapprove", "approve")]
v2 = []
for store in ["redis", "embedded"]:
    for name, mode, native in pairs:
        cells = []
        for rnd in sorted({r["round"] for r in by_key.get((store, mode), [])}):
            a = [r for r in by_key.get((store, native), []) if r["round"] == rnd]
            b = [r for r in by_key.get((store, mode), []) if r["round"] == rnd]
            if a and b:
                cells.append((b[0]["rps"] / a[0]["rps"], a[0]["cpu"], b[0]["cpu"]))
        if cells:
            ratios = sorted(c[0] for c in cells)
            v2.append(
                f"| {store} | {name} | "
                + ", ".join(f"{x:.2f}× ({n:.0f} / {m:.0f} µs)" for x, n, m in cells)
                + f" | {ratios[(len(ratios) - 1) // 2]:.2f}× |"
            )
if v2:
    out.append("")
    out.append(
        "| store | `/v2` ÷ native | per round: req/s ratio (otpd CPU µs/req native / `/v2`) | median |"
    )
    out.append("|---|---|---|---|")
    out.extend(v2)
print("\n".join(out))
