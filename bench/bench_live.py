"""Online loop benchmark (issue 16): acknowledgement latency, freshness, sustained ingestion.

Run: ``python -m bench.bench_live [--seconds 120] [--rate 5000] [--samples 40]`` (or ``make bench ARGS=live``)

``sparktf serve`` (a two-tower export over 5,000 items and 2,000 users, as in
bench_serving) and ``sparktf stream`` (default settings: 1 s trigger, SQLite online store,
``local[*]``) run as their own processes on this machine, as ``sparktf live`` runs them.

* **Reference**: the same work without HTTP or Spark, in this run: write a small file
  aside, fsync it, rename it, fsync the directory (what one acknowledgement must wait for).
* **Acknowledgement latency**: ``POST /v1/events`` with one event, sequentially (idle server),
  and the latencies of every request of the sustained load (measured from its scheduled send time).
* **Freshness**: post one event for a user, then ask ``:recommend`` every 20 ms until the
  reply's ``live.last_ack_time`` reaches that event's acknowledgement; freshness is the time
  from the client's receipt of the acknowledgement to the receipt of that reply. Measured
  idle and during the sustained load.
* **Sustained ingestion**: bench/loadgen_events.py offers ``--rate`` events/s (requests of
  100 events on a fixed schedule) for ``--seconds``; every 2 s the stream's lag is sampled:
  events the server accepted (its ``/metrics``) minus events the stream applied (its status
  file). The lag is a sawtooth (it rises while a micro-batch runs, drops when it commits),
  so it is judged by a least-squares line through the samples after the first quarter:
  "not growing" when its slope is within two standard errors of zero (no trend the samples
  can tell from the sawtooth) or under 1% of the input rate. The mean lag of the 2nd and
  the last quarter are shown too, and the samples go to bench/results/live-lag.json.

The table goes to stdout and bench/results/live.md (live-<U>-users.md for another ``--users``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_serving import export_bench_model, free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


def fsync_reference(directory: Path, n: int = 200) -> list[float]:
    """Seconds per write-aside + fsync + rename + directory fsync of a 300-byte file."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    payload = b"x" * 300
    dfd = os.open(directory, os.O_RDONLY)
    try:
        for i in range(n):
            t0 = time.perf_counter()
            tmp = directory / f".ref-{i}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, directory / f"ref-{i}")
            os.fsync(dfd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(dfd)
    return out


def accepted_total(client: Any, url: str) -> int:
    text = client.get(f"{url}/metrics", timeout=10).text
    return int(
        sum(float(m) for m in re.findall(r'^sparktf_events_total\{outcome="accepted"\} ([0-9.e+]+)$', text, re.M))
    )


def applied_total(status_file: Path) -> int:
    try:
        return int(json.loads(status_file.read_text())["events"])
    except (OSError, ValueError, KeyError):
        return 0


def freshness(
    client: Any, url: str, samples: int, tag: str, stop_at: float | None = None
) -> tuple[list[float], list[float]]:
    """(acknowledgement latencies, freshness) in seconds, one event at a time."""
    acks, fresh = [], []
    for s in range(samples):
        if stop_at is not None and time.monotonic() > stop_at:
            break
        user = f"fresh-{tag}-{s}"
        event = {"event_time": time.time(), "user_id": user, "item_id": f"i{s}", "event_type": "view"}
        t0 = time.perf_counter()
        r = client.post(f"{url}/v1/events", json={"events": [event]}, timeout=30)
        t_ack = time.perf_counter()
        r.raise_for_status()
        server_ack = float(r.json()["ack_time"])
        acks.append(t_ack - t0)
        deadline = t_ack + 60
        while time.perf_counter() < deadline:
            rep = client.post(f"{url}/v1/models/recsys:recommend", json={"user_id": user, "k": 10}, timeout=30)
            live = rep.json().get("live") or {}
            if rep.json().get("history_source") == "live" and float(live.get("last_ack_time", 0)) >= server_ack:
                fresh.append(time.perf_counter() - t_ack)
                break
            time.sleep(0.02)
        else:
            raise SystemExit(f"event of {user} not reflected within 60 s")
        time.sleep(0.2)
    return acks, fresh


def lag_trend(samples: list[tuple[float, int]], after_s: float) -> tuple[float, float]:
    """Slope (events/s) of a least-squares line through the lag samples after ``after_s``,
    and its standard error."""
    tail = [(t, lag) for t, lag in samples if t >= after_s]
    if len(tail) < 3:
        return 0.0, float("inf")
    xs, ys = [t for t, _ in tail], [float(lag) for _, lag in tail]
    fit = statistics.linear_regression(xs, ys)
    resid = sum((y - fit.intercept - fit.slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    mx = statistics.mean(xs)
    se = math.sqrt(resid / (len(xs) - 2) / sum((x - mx) ** 2 for x in xs))
    return fit.slope, se


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description="sparktf live: ack latency, freshness, sustained ingestion")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="offered events per second")
    ap.add_argument("--batch", type=int, default=100, help="events per request")
    ap.add_argument("--users", type=int, default=2000, help="distinct users of the load (fewer: more per user)")
    ap.add_argument("--samples", type=int, default=40, help="freshness samples (idle, and again under load)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    work = tmp / "work"
    print(f"building the model in {tmp} ...", flush=True)
    base, _ = export_bench_model(tmp)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "sparktf.cli"]
    common = ["--workdir", str(work)]
    server = start([*cli, "serve", *common, "--model", base, "--port", str(port)], env, tmp / "serve.log")
    stream = start([*cli, "stream", *common], env, tmp / "stream.log")
    status_file = work / "state" / "stream.json"
    rows: dict[str, Any] = {}
    try:
        wait_http(f"{url}/readyz", 180, server, tmp / "serve.log")
        ref = fsync_reference(tmp / "ref")
        with httpx.Client() as client:
            # The stream is up once it has applied a first event.
            deadline = time.monotonic() + 180
            warm = {"event_time": time.time(), "user_id": "warmup", "item_id": "i1", "event_type": "view"}
            client.post(f"{url}/v1/events", json={"events": [warm]}).raise_for_status()
            while applied_total(status_file) < 1:
                if stream.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"stream not applying events; log:\n{(tmp / 'stream.log').read_text()[-3000:]}")
                time.sleep(0.5)
            print("measuring idle acknowledgement latency and freshness ...", flush=True)
            idle_acks, idle_fresh = freshness(client, url, args.samples, "idle")

            print(f"offering {args.rate:,.0f} events/s for {args.seconds:.0f} s ...", flush=True)
            load_out: dict[str, Any] = {}

            def run_load() -> None:
                cmd = [
                    sys.executable, "-m", "bench.loadgen_events", "--url", f"{url}/v1/events",
                    "--rate", str(args.rate / args.batch), "--batch", str(args.batch), "--seconds", str(args.seconds),
                    "--users", str(args.users),
                ]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 300, cwd=ROOT, env=env)
                if out.returncode != 0:
                    load_out["error"] = out.stderr[-3000:]
                else:
                    load_out.update(json.loads(out.stdout.strip().splitlines()[-1]))

            base_accepted, base_applied = accepted_total(client, url), applied_total(status_file)
            loader = threading.Thread(target=run_load)
            t_start = time.monotonic()
            loader.start()
            lag_samples: list[tuple[float, int]] = []
            load_fresh: list[float] = []

            def sample_lag() -> None:
                while loader.is_alive():
                    acc = accepted_total(client, url) - base_accepted
                    app = applied_total(status_file) - base_applied
                    lag_samples.append((time.monotonic() - t_start, acc - app))
                    time.sleep(2.0)

            sampler = threading.Thread(target=sample_lag)
            sampler.start()
            time.sleep(min(20.0, args.seconds / 4))
            with httpx.Client() as c2:
                _, load_fresh = freshness(c2, url, args.samples, "load", stop_at=t_start + args.seconds - 5)
            loader.join()
            sampler.join()
            if "error" in load_out:
                raise SystemExit(f"load generator failed:\n{load_out['error']}")
            # Drain: how long after the load ends until the stream has applied everything.
            target = accepted_total(client, url) - base_accepted
            t_end = time.monotonic()
            while applied_total(status_file) - base_applied < target and time.monotonic() - t_end < 300:
                time.sleep(0.2)
            drain_s = time.monotonic() - t_end
            drained = applied_total(status_file) - base_applied
    finally:
        stop(server)
        stop(stream)

    n = len(lag_samples)
    q2 = [lag for t, lag in lag_samples if args.seconds / 4 <= t < args.seconds / 2]
    q4 = [lag for t, lag in lag_samples if t >= 3 * args.seconds / 4]
    growth = (statistics.mean(q4) - statistics.mean(q2)) if q2 and q4 else float("nan")
    slope, slope_se = lag_trend(lag_samples, args.seconds / 4)
    rows = {
        "reference: write aside + fsync + rename + dir fsync (ms)": (1000 * pct(ref, 0.5), 1000 * pct(ref, 0.99)),
        "ack latency, one event, idle (ms)": (1000 * pct(idle_acks, 0.5), 1000 * pct(idle_acks, 0.99)),
        f"ack latency, {args.batch} events/request at {args.rate:,.0f} ev/s (ms)": (
            load_out["p50_ms"],
            load_out["p99_ms"],
        ),
        "freshness, ack → :recommend reflects it, idle (s)": (pct(idle_fresh, 0.5), pct(idle_fresh, 0.99)),
        f"freshness under {args.rate:,.0f} ev/s (s)": (pct(load_fresh, 0.5), pct(load_fresh, 0.99)),
    }
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"server and stream job as separate processes (`sparktf serve`, `sparktf stream`, defaults: "
        f"1 s trigger, SQLite online store), load generator in a third; "
        f"1-minute load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "| measure | p50 | p99 | p99 / reference p99 |",
        "|---|---:|---:|---:|",
    ]
    ref99 = 1000 * pct(ref, 0.99)
    for name, (p50, p99) in rows.items():
        ratio = f"{p99 / ref99:.1f}×" if name.endswith("(ms)") and not name.startswith("reference") else ""
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} | {ratio} |")
    lines += [
        "",
        "| sustained ingestion | value |",
        "|---|---:|",
        f"| offered | {load_out['offered_events_per_s']:,.0f} events/s for {args.seconds:.0f} s, "
        f"{args.users:,} users ({load_out['offered_events_per_s'] / args.users:.2f} events/s each) |",
        f"| acknowledged | {load_out['achieved_events_per_s']:,.0f} events/s ({load_out['events']:,} events, "
        f"{load_out['errors']} errors) |",
        f"| stream lag (accepted − applied), 2nd quarter mean | {statistics.mean(q2) if q2 else float('nan'):,.0f} events |",
        f"| stream lag, last quarter mean | {statistics.mean(q4) if q4 else float('nan'):,.0f} events |",
        f"| lag growth (last − 2nd quarter mean) | {growth:,.0f} events (one second of input = {args.rate:,.0f}) |",
        f"| lag trend after the first quarter (least squares ± standard error) | {slope:,.0f} ± {slope_se:,.0f} "
        f"events/s = {100 * slope / args.rate:.1f}% of the input "
        f"({'not growing' if slope <= 2 * slope_se or slope < 0.01 * args.rate else 'GROWING'}) |",
        f"| lag samples | {n} (every 2 s), max {max((lag for _, lag in lag_samples), default=0):,} events |",
        f"| drained after the load | {drain_s:.1f} s ({drained:,} of {target:,} events applied) |",
    ]
    table = "\n".join(lines)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "live.md" if args.users == 2000 else f"live-{args.users}-users.md"
    (out / name).write_text(table + "\n", encoding="utf-8")
    (out / name.replace(".md", "-lag.json")).write_text(json.dumps(lag_samples), encoding="utf-8")


if __name__ == "__main__":
    main()
