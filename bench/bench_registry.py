"""The gate and the promotion's safety, against plain-MLflow references.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_registry [--server] [--n 20]``

1. **Gate**: :func:`sparktf.registry.gate.evaluate_gate` against
   ``mlflow.validate_evaluation_results`` on the same overall metrics and the
   same thresholds (floor, absolute and relative change; MLflow has no slices),
   after checking that both give the same verdict on 200 random candidate /
   champion pairs; then ours with per-slice thresholds, which MLflow cannot do.
2. **Registry** on the embedded SQLite store (and, with ``--server``, on an
   ``mlflow server`` started on loopback): ``ModelRegistry.register`` against a bare
   ``create_model_version``; the promotion lock alone; and a whole
   ``promote_version`` (evaluation replaced by a dict look-up, so only the
   registry work is timed: lock, report and tags, alias moves, read-back) against
   the naive promotion it replaces (tag + two ``set_registered_model_alias``
   calls, no lock, no report, no check).

Prints a markdown table and writes it to ``bench/results/registry.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import sparktf  # noqa: F401 - sets TF_USE_LEGACY_KERAS before anything imports TensorFlow
from sparktf.config import GateConfig, MetricThreshold
from sparktf.registry.gate import evaluate_gate

RESULTS = Path(__file__).parent / "results" / "registry.md"
METRICS = [f"{m}@{k}" for m in ("hr", "ndcg") for k in (10, 20, 50, 100)] + ["mrr"]


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- gate


def _mlflow_thresholds() -> dict[str, Any]:
    from mlflow.models import MetricThreshold as MlflowThreshold

    return {
        m: MlflowThreshold(threshold=0.05, min_absolute_change=0.001, min_relative_change=0.01, greater_is_better=True)
        for m in METRICS
    }


def _mlflow_gate(thresholds: dict[str, Any], cand: dict[str, float], champ: dict[str, float]) -> bool:
    import mlflow
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    try:
        mlflow.validate_evaluation_results(thresholds, EvaluationResult(cand, {}), EvaluationResult(champ, {}))
    except ModelValidationFailedException:
        return False
    return True


def _our_thresholds(slices: bool) -> tuple[MetricThreshold, ...]:
    overall = tuple(
        MetricThreshold(metric=m, min_value=0.05, min_absolute_change=0.001, min_relative_change=0.01) for m in METRICS
    )
    if not slices:
        return overall
    return overall + tuple(
        MetricThreshold(metric=m, slice=s, min_relative_change=-0.05)
        for m in ("hr@10", "ndcg@10")
        for s in ("user_activity", "target_popularity", "target_category")
    )


def _sliced(overall: dict[str, float], rng: np.random.Generator) -> dict[str, Any]:
    values = {"user_activity": ["low", "mid", "high"], "target_popularity": ["head", "torso", "tail"]}
    values["target_category"] = [f"c{i}" for i in range(40)]
    return {
        "overall": overall,
        "slices": {
            s: {v: {**{m: float(rng.uniform(0.1, 0.5)) for m in METRICS}, "count": 500} for v in vals}
            for s, vals in values.items()
        },
    }


def bench_gate(repeat: int) -> list[tuple[str, str, str]]:
    # Both sides get their thresholds built once, outside the timing.
    logging.getLogger("mlflow.models.evaluation.validation").setLevel(logging.WARNING)
    reference, overall, sliced = _mlflow_thresholds(), _our_thresholds(False), _our_thresholds(True)
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(200):
        champ = {m: float(rng.uniform(0.1, 0.5)) for m in METRICS}
        cand = {m: v * float(rng.uniform(0.97, 1.06)) for m, v in champ.items()}
        agree += evaluate_gate(cand, champ, overall).passed == _mlflow_gate(reference, cand, champ)
    if agree != 200:
        raise SystemExit(f"verdicts differ from MLflow's on {200 - agree} of 200 pairs; not timing a wrong gate")
    champ = {m: 0.3 for m in METRICS}
    cand = {m: 0.32 for m in METRICS}
    ref = _timed(lambda: _mlflow_gate(reference, cand, champ), repeat)
    ours = _timed(lambda: evaluate_gate(cand, champ, overall), repeat)
    sliced_c, sliced_b = _sliced(cand, rng), _sliced(champ, rng)
    report = evaluate_gate(sliced_c, sliced_b, sliced)
    with_slices = _timed(lambda: evaluate_gate(sliced_c, sliced_b, sliced), repeat)
    render = _timed(lambda: (report.to_markdown(), report.to_json()), repeat)
    n = len(METRICS)
    return [
        ("gate, overall only", f"mlflow.validate_evaluation_results: {ref * 1e6:,.0f} µs", f"{ours * 1e6:,.0f} µs ({n * 3} checks, same verdict on 200/200 pairs)"),
        ("gate, + 6 slice thresholds over 46 slice values", "— (MLflow has no slices)", f"{with_slices * 1e6:,.0f} µs ({len(report.checks)} checks)"),
        ("report rendering (markdown + JSON)", "—", f"{render * 1e6:,.0f} µs"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- registry


@contextmanager
def _server(root: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", f"sqlite:///{root}/server.db",
            "--default-artifact-root", f"file://{root}/artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"mlflow server did not start; see {root / 'server.log'}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def bench_store(uri: str, artifact_root: str | None, n: int, label: str) -> list[tuple[str, str, str]]:
    from mlflow import MlflowClient

    from sparktf.registry.lock import PromotionLock
    from sparktf.registry.promote import promote_version
    from sparktf.registry.registry import ModelRegistry

    client = MlflowClient(uri, uri)
    location = None if artifact_root is None else f"file://{artifact_root}"
    exp = client.create_experiment(f"bench-{uuid.uuid4().hex[:6]}", artifact_location=location)
    run = client.create_run(exp).info.run_id
    models = [client.create_logged_model(exp, source_run_id=run, name=f"m{i}") for i in range(2 * n + 1)]

    # Registration.
    bare_name = f"bare-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(bare_name)
    bare = _timed_each(
        lambda i: client.create_model_version(
            bare_name, models[i].artifact_location, run_id=run, model_id=models[i].model_id
        ),
        n,
    )
    registry = ModelRegistry(uri, f"bench-{uuid.uuid4().hex[:6]}")
    metrics = {m: 0.3 for m in METRICS}
    ours = _timed_each(lambda i: registry.register(f"models:/{models[i].model_id}", metrics=metrics), n)

    # The lock alone.
    lock_time = _timed_each(lambda i: _lock_cycle(PromotionLock(registry.client, registry.name, uri)), n)

    # Promotion: each version a bit better than the last, so every one passes.
    gate = GateConfig(
        thresholds=tuple(MetricThreshold(metric=m, min_value=0.0, min_absolute_change=0.0) for m in METRICS)
    )
    quality = {info.uri: {m: 0.3 + 0.001 * info.version for m in METRICS} for info in registry.versions()}
    promote = _timed_each(lambda i: promote_version(registry, i + 1, quality.__getitem__, gate), n)
    naive_name = bare_name
    naive = _timed_each(lambda i: _naive_promotion(client, naive_name, i + 1), n)
    aliases = registry.aliases()
    assert aliases == {"champion": n, "previous": n - 1}, aliases
    return [
        (f"register a version ({label})", f"create_model_version: {bare * 1e3:.1f} ms", f"ModelRegistry.register: {ours * 1e3:.1f} ms"),
        (f"promotion lock, acquire + release ({label})", "— (MLflow has none)", f"{lock_time * 1e3:.1f} ms"),
        (f"promote, registry work only ({label})", f"tag + 2 aliases, unchecked: {naive * 1e3:.1f} ms", f"promote_version: {promote * 1e3:.1f} ms"),
    ]  # fmt: skip


def _lock_cycle(lock: Any) -> None:
    lock.acquire()
    lock.release()


def _naive_promotion(client: Any, name: str, version: int) -> None:
    client.set_model_version_tag(name, str(version), "validation_status", "passed")
    if version > 1:
        client.set_registered_model_alias(name, "previous", str(version - 1))
    client.set_registered_model_alias(name, "champion", str(version))


def _timed_each(fn: Callable[[int], Any], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="registrations and promotions per store")
    parser.add_argument("--repeat", type=int, default=300, help="gate calls per timing")
    parser.add_argument("--server", action="store_true", help="also measure against an mlflow server on loopback")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    rows = bench_gate(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows += bench_store(f"sqlite:///{root}/mlflow.db", str(root / "artifacts"), args.n, "SQLite")
        if args.server:
            (root / "srv").mkdir()
            with _server(root / "srv") as url:
                rows += bench_store(url, None, args.n, "mlflow server")
    lines = [
        "## Registry and validation gate",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.1f} at start. Medians; "
        f"gate over {args.repeat} calls, registry over {args.n} operations each.",
        "",
        "| what | reference | sparktf |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
    ]
    text = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
