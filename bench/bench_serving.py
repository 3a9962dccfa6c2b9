"""Serving benchmark: sparktf serve (:predict, :recommend) against `mlflow models serve`.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_serving [--seconds 6] [--levels 1,8,32]``

Both servers serve the same model on this machine: a two-tower export (5,000
items, 2,000 users, 64 dimensions; untrained, which costs the same to run), as a
TF Serving base path for sparktf and as the registered pyfunc model (the export
inside, logged with RunTracker.log_model into a temporary SQLite store) for
``mlflow models serve --env-manager local``. A separate load-generator process
(bench/loadgen_serving.py) keeps N keep-alive connections busy on loopback for a
fixed time at each concurrency level and reports requests/s, p50 and p99.

One request = one user (user_id + 10 recent items): sparktf ``:predict`` runs
``serving_default`` (query embedding + top-10 over the catalogue in the graph),
``:recommend`` adds the ANN index search and exclusions; MLflow's
``/invocations`` runs the same SavedModel through the pyfunc wrapper. Both servers run
at once and the cells are interleaved and repeated (median kept), so background
load on a shared machine weighs on both alike. The table goes to stdout and
bench/results/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUM_ITEMS, NUM_USERS, DIM, HISTORY = 5_000, 2_000, 64, 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_bench_model(tmp: Path) -> tuple[str, str]:
    """A two-tower export over NUM_ITEMS items and NUM_USERS users: (base path, version 1 path)."""
    import sparktf  # noqa: F401
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model
    from sparktf.models.factory import build_model

    items = [f"i{i}" for i in range(NUM_ITEMS)]
    catalog = Catalog.from_arrays(
        items,
        category=[f"c{i % 40}" for i in range(NUM_ITEMS)],
        brand=[f"b{i % 200}" for i in range(NUM_ITEMS)],
        price_bucket=[i % 8 for i in range(NUM_ITEMS)],
        user_ids=[f"u{u}" for u in range(NUM_USERS)],
    )
    model = build_model(catalog, ModelParams(kind="two_tower", embedding_dim=DIM, seed=1))
    base = tmp / "recsys"
    return str(base), export_model(model, str(base), 1, k=10)


def make_model(tmp: Path) -> tuple[str, str, str]:
    """The export (base path), the pyfunc model URI and its tracking URI."""
    from sparktf.training.tracking import RunTracker

    base, export = export_bench_model(tmp)
    tracking_uri = f"sqlite:///{tmp}/mlflow.db"
    tracker = RunTracker(tracking_uri, "bench-serving", artifact_root=str(tmp / "mlartifacts"))
    tracker.start("bench")
    uri = tracker.log_model(export, "recommender")
    tracker.end()
    return base, uri, tracking_uri


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "wb")  # closed when the process ends with the run
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not up after {timeout_s} s; log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def load(url: str, body: Any, concurrency: int, seconds: float, tmp: Path) -> dict[str, Any]:
    path = tmp / "body.json"
    path.write_text(json.dumps(body))
    cmd = [
        sys.executable, "-m", "bench.loadgen_serving", "--url", url, "--body", str(path),
        "--concurrency", str(concurrency), "--seconds", str(seconds), "--max-requests", "200000",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description="sparktf serve vs mlflow models serve")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    print(f"building the model in {tmp} ...", flush=True)
    base, model_uri, tracking_uri = make_model(tmp)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
        # mlflow models serve starts `uvicorn` from PATH: the one of this environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ours_port, mlflow_port = free_port(), free_port()
    ours_cmd = [
        sys.executable, "-m", "sparktf.cli", "serve", "--model", base, "--workdir", str(tmp / "work"),
        "--set", f"serve.port={ours_port}", "--set", "serve.access_log=false", "--set", "serve.poll_interval_s=0",
    ]  # fmt: skip
    mlflow_cmd = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
        "--env-manager", "local", "-p", str(mlflow_port), "-h", "127.0.0.1",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    history = [f"i{int(i)}" for i in rng.choice(NUM_ITEMS, size=HISTORY, replace=False)]
    targets = {
        ("sparktf", ":predict"): (
            f"http://127.0.0.1:{ours_port}/v1/models/recsys:predict",
            {"instances": [{"user_id": "u7", "history": history}]},
        ),
        ("sparktf", ":recommend"): (
            f"http://127.0.0.1:{ours_port}/v1/models/recsys:recommend",
            {"user_id": "u7", "history": history, "k": 10},
        ),
        ("mlflow", "/invocations"): (
            f"http://127.0.0.1:{mlflow_port}/invocations",
            {"dataframe_records": [{"user_id": "u7", "history": history}]},
        ),
    }
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    rounds: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    procs = []
    try:
        for server, cmd, ready in (
            ("sparktf", ours_cmd, f"http://127.0.0.1:{ours_port}/readyz"),
            ("mlflow", mlflow_cmd, f"http://127.0.0.1:{mlflow_port}/ping"),
        ):
            log = tmp / f"{server}.log"
            procs.append(start(cmd, env, log))
            wait_http(ready, 300, procs[-1], log)
        # Both servers stay up and the cells are interleaved, repeated, and the median
        # kept: on a shared machine the background load then weighs on both alike.
        for _ in range(args.rounds):
            for c in levels:
                for (name, endpoint), (url, body) in targets.items():
                    r = load(url, body, c, args.seconds, tmp)
                    rounds.setdefault((name, endpoint, c), []).append(r)
                    print(f"{name:8s} {endpoint:12s} c={c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                          f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']} {r['first_error'][:80]}", flush=True)  # fmt: skip
    finally:
        for proc in procs:
            stop(proc)
    for key, runs in rounds.items():
        median = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        results[key] = {**median, "errors": sum(r["errors"] for r in runs)}
    load_avg = os.getloadavg()[0]

    lines = [
        "## Serving: sparktf serve vs `mlflow models serve` (same model, same machine)",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"load generator in a separate process on loopback, {args.seconds:g} s per cell, cells interleaved, "
        f"median of {args.rounds} rounds by requests/s; 1-minute load average at the end {load_avg:.1f}.",
        f"Model: two-tower export, {NUM_ITEMS:,} items, {NUM_USERS:,} users, dim {DIM}; one user with {HISTORY} recent "
        "items per request. sparktf: serve.max_batch_size=64, batch_timeout_micros=1000, batch_threads=2. "
        "MLflow: pyfunc of the same export, `--env-manager local`, default workers.",
        "",
        "| server | endpoint | concurrency | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (name, endpoint, c), r in results.items():
        lines.append(
            f"| {name} | {endpoint} | {c} | {r['rps']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    lines += [
        "",
        "| concurrency | :predict / mlflow req/s | :recommend / mlflow req/s | p99 :predict vs mlflow (ms) |",
        "|---:|---:|---:|---|",
    ]
    for c in levels:
        m = results.get(("mlflow", "/invocations", c))
        p = results.get(("sparktf", ":predict", c))
        rec = results.get(("sparktf", ":recommend", c))
        if m and p and rec and m["rps"] > 0:
            lines.append(
                f"| {c} | {p['rps'] / m['rps']:.1f}× | {rec['rps'] / m['rps']:.1f}× | {p['p99_ms']:.2f} vs {m['p99_ms']:.2f} |"
            )
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.md").write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
