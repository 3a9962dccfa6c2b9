"""Monitoring overhead: ``:recommend`` latency with the server's monitoring on and off.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_monitoring [--seconds 5] [--rounds 5]``

Two ``sparktf serve`` processes serve the same export (bench_serving's two-tower model: 5,000
items, 2,000 users, dim 64) with its reference profile; one with ``monitoring.enabled=true``
(every reply counted into the version's sliding window, impressions off), one with it off. The load generator
(bench/loadgen_serving.py, a separate process) sends one user with 20 recent items per
request at concurrency 1 and 8; the cells alternate between the two servers, every round
runs both, and the table keeps the median of the rounds with the spread (min–max) of p99.
A third server also logs every reply's impressions (``monitoring.impressions``: a durable
write before the reply). A last table times the counting alone in this process (``OnlineWindow.observe`` per
reply, and ``GET /v1/monitoring``'s computation), which is what monitoring adds to a request.
Output: stdout and bench/results/monitoring.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_serving import NUM_ITEMS, export_bench_model, free_port, load, start, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
HISTORY = 20


def _reference(export: str, rng: np.random.Generator) -> Any:
    from sparktf.monitoring.profile import build_reference, write_reference

    items = [f"i{i}" for i in range(NUM_ITEMS)]
    counts = np.sort(rng.zipf(1.3, NUM_ITEMS))[::-1].astype(float)
    p = counts / counts.sum()
    histories = [[items[j] for j in rng.choice(NUM_ITEMS, size=HISTORY, p=p)] for _ in range(2000)]
    ref = build_reference(
        model_kind="two_tower",
        split="validation",
        item_ids=items,
        item_counts=counts,
        item_category={x: f"c{i % 40}" for i, x in enumerate(items)},
        item_price_bucket={x: i % 8 for i, x in enumerate(items)},
        histories=histories,
        top1_scores=rng.normal(0, 1, 2000),
        history_cap=HISTORY,
    )
    write_reference(os.path.join(export, "assets.extra"), ref)
    return ref, items, histories


def _micro(ref: Any, items: list[str], histories: list[list[str]]) -> dict[str, float]:
    from sparktf.monitoring.profile import Thresholds
    from sparktf.monitoring.window import OnlineWindow

    window = OnlineWindow(ref, items, window_s=3600, slots=60)
    n = 20_000
    runs = []
    for _ in range(5):
        start_t = time.perf_counter()
        for i in range(n):
            window.observe(histories[i % len(histories)], top1=0.5, fallback=False, unknown_user=False)
        runs.append((time.perf_counter() - start_t) / n * 1e6)
    status = []
    for _ in range(20):
        start_t = time.perf_counter()
        window.status(Thresholds())
        status.append((time.perf_counter() - start_t) * 1e3)
    return {"observe_us": statistics.median(runs), "status_ms": statistics.median(status)}


def main() -> None:
    ap = argparse.ArgumentParser(description="monitoring on vs off")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    rng = np.random.default_rng(0)
    print(f"building the model in {tmp} ...", flush=True)
    base, export = export_bench_model(tmp)
    ref, items, histories = _reference(export, rng)
    micro = _micro(ref, items, histories)
    print(f"observe {micro['observe_us']:.2f} µs per reply; status {micro['status_ms']:.2f} ms", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    # off: no monitoring; on: the drift profile (what the 5% target is about); on+imp:
    # also every reply's impressions written durably before it answers (monitoring.impressions).
    sides = {
        "off": ["monitoring.enabled=false"],
        "on": ["monitoring.enabled=true", "monitoring.impressions=false"],
        "on+imp": ["monitoring.enabled=true", "monitoring.impressions=true"],
    }
    ports = {side: free_port() for side in sides}
    procs = []
    body = {"user_id": "u7", "history": histories[7], "k": 10}
    rounds: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        for side, port in ports.items():
            cmd = [
                sys.executable, "-m", "sparktf.cli", "serve", "--model", base, "--workdir", str(tmp / f"work-{side}"),
                "--set", f"serve.port={port}", "--set", "serve.access_log=false", "--set", "serve.poll_interval_s=0",
                *[a for x in sides[side] for a in ("--set", x)],
            ]  # fmt: skip
            log = tmp / f"{side}.log"
            procs.append(start(cmd, env, log))
            wait_http(f"http://127.0.0.1:{port}/readyz", 300, procs[-1], log)
        for r in range(args.rounds):
            for c in levels:
                names = list(sides)
                order = names[r % 3 :] + names[: r % 3]  # rotate who goes first
                for side in order:
                    url = f"http://127.0.0.1:{ports[side]}/v1/models/recsys:recommend"
                    out = load(url, body, c, args.seconds, tmp)
                    rounds.setdefault((side, c), []).append(out)
                    print(
                        f"round {r} c={c} monitoring {side:6s} {out['rps']:8.1f} req/s p50 {out['p50_ms']:6.2f} ms "
                        f"p99 {out['p99_ms']:6.2f} ms errors {out['errors']}",
                        flush=True,
                    )
        import httpx

        doc = httpx.get(f"http://127.0.0.1:{ports['on']}/v1/monitoring", timeout=30).json()
        landed = sum(1 for _ in (tmp / "work-on+imp" / "data" / "landing").glob("*"))
        counted = doc["versions"][0]["requests"] if doc["versions"] else 0
    finally:
        for proc in procs:
            stop(proc)
    load_avg = os.getloadavg()[0]

    def med(side: str, c: int, key: str) -> float:
        return statistics.median(x[key] for x in rounds[(side, c)])

    def spread(side: str, c: int, key: str) -> str:
        values = [x[key] for x in rounds[(side, c)]]
        return f"{min(values):.2f}–{max(values):.2f}"

    lines = [
        "## Monitoring overhead: `:recommend` with monitoring on and off (issue #19)",
        "",
        f"Command: `.venv/bin/python -m bench.bench_monitoring --seconds {args.seconds:g} --rounds {args.rounds}` · "
        f"{time.strftime('%Y-%m-%d')} · {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()} · 1-minute load average at the end {load_avg:.1f}.",
        "",
        f"Two `sparktf serve` processes, same export (two-tower, {NUM_ITEMS:,} items, dim 64) with its reference "
        f"profile; one user with {HISTORY} recent items per request, k = 10; load generator in a separate process, "
        f"{args.seconds:g} s per cell, cells alternating between the servers, median of {args.rounds} rounds "
        f"(p99 spread min–max). The monitored server counted {counted:,} replies in its window; the one "
        f"with impressions wrote {landed:,} landing files (one durable write per reply, no stream applying them).",
        "",
        "| concurrency | monitoring | requests/s | p50 ms | p99 ms (median) | p99 spread ms | errors |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for c in levels:
        for side in sides:
            errors = sum(x["errors"] for x in rounds[(side, c)])
            lines.append(
                f"| {c} | {side} | {med(side, c, 'rps'):.1f} | {med(side, c, 'p50_ms'):.2f} | "
                f"{med(side, c, 'p99_ms'):.2f} | {spread(side, c, 'p99_ms')} | {errors} |"
            )
    lines += [
        "",
        "| concurrency | monitoring: added p50 | monitoring: added p99 (target < 5%) | with impressions: added p50 | "
        "with impressions: added p99 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in levels:

        def added(side: str, key: str, c: int = c) -> str:
            return f"{med(side, c, key) / med('off', c, key) - 1:+.1%}"

        lines.append(
            f"| {c} | {added('on', 'p50_ms')} | {added('on', 'p99_ms')} | {added('on+imp', 'p50_ms')} | "
            f"{added('on+imp', 'p99_ms')} |"
        )
    lines += [
        "",
        "| what monitoring does | cost (this process, median of 5 × 20,000 replies) |",
        "|---|---:|",
        f"| count one reply of {HISTORY} history items (`OnlineWindow.observe`) | {micro['observe_us']:.2f} µs |",
        f"| compute `GET /v1/monitoring` (5 features, 3 rates, 60 slots) | {micro['status_ms']:.2f} ms |",
    ]
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitoring.md").write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
