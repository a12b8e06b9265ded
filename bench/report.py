"""Turns the rows run.sh measured (one JSON object per line) into the
markdown that run.sh prints and writes.

Usage: report.py ROWS_FILE META_FILE, or report.py --line ROW_JSON
"""

import json
import statistics
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
}
ORDER = ["healthz", "count", "approve", "miss", "send"]


def ms(us):
    return f"{us / 1000:.2f} ms"


def median_row(group):
    """The round whose req/s is the median, so every column comes from one
    real run rather than a mix of rounds."""
    ordered = sorted(group, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


by_key = defaultdict(list)
for r in rows:
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    by_key[(r["store"], r["mode"])].append(r)

out = []
rounds = meta["rounds"]
out.append(
    f"wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration']}s per row, "
    f"{rounds} round(s), rows interleaved"
    + (" (each cell: the round with the median req/s)" if rounds > 1 else "")
    + f"; {meta['date']}; {meta['machine']}."
)
out.append("")
out.append(
    "| store | workload | req/s | ÷ `/healthz` | p50 | p99 | status mix | "
    "otpd CPU µs/req | ÷ `/healthz` CPU | redis-server µs/req | wrk µs/req | Redis commands/req |"
)
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for store in ["redis", "embedded"]:
    base = by_key.get((store, "healthz"))
    base = median_row(base) if base else None
    for mode in ORDER:
        group = by_key.get((store, mode))
        if not group:
            continue
        r = median_row(group)
        ratio = f"{r['rps'] / base['rps']:.2f}×" if base else "-"
        cpu = r["otpd_cpu_us"] / r["requests"]
        cpu_ratio = (
            f"{cpu / (base['otpd_cpu_us'] / base['requests']):.1f}×" if base else "-"
        )
        redis_cpu = (
            f"{r['redis_cpu_us'] / r['requests']:.1f}" if store == "redis" else "-"
        )
        wrk_cpu = f"{r['wrk_cpu_us'] / r['requests']:.1f}"
        if store == "redis" and r["commands"]:
            cmds = ", ".join(
                f"{name} {n / r['requests']:.2f}"
                for name, n in sorted(r["commands"].items(), key=lambda kv: -kv[1])
                if n / r["requests"] >= 0.005
            )
        else:
            cmds = "-"
        mix = " ".join(f"{s}×{n}" for s, n in r["statuses"].items())
        out.append(
            f"| {store} | {LABELS[mode]} | {r['rps']:,.0f} | {ratio} | {ms(r['p50_us'])} | "
            f"{ms(r['p99_us'])} | {mix} | {cpu:.1f} | {cpu_ratio} | {redis_cpu} | {wrk_cpu} | {cmds} |"
        )
out.append("")
for store in ["redis", "embedded"]:
    s = meta["stores"].get(store)
    if s:
        out.append(
            f"- {store}: cold start to a ready `/healthz` {s['start_ms']} ms; "
            f"peak RSS (VmHWM) {s['hwm_kb'] / 1024:.1f} MB over all its rows "
            f"(RSS after the run {s['rss_kb'] / 1024:.1f} MB)."
        )
if rounds > 1:
    spread = []
    for (store, mode), group in sorted(by_key.items()):
        rps = [r["rps"] for r in group]
        spread.append(
            f"{store}/{mode} {min(rps):,.0f}–{max(rps):,.0f} (median {statistics.median(rps):,.0f})"
        )
    out.append("- req/s range over the rounds: " + "; ".join(spread) + ".")
print("\n".join(out))
