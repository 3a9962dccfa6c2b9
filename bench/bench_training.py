"""Training throughput and model quality against the baselines, on real and synthetic data.

Runs the real pipeline (``sparktf run``) in fresh workdirs and reads what the stages
recorded (``state/train.json``, ``state/evaluate.json``):

1. MovieLens-100K (leave-last-out, full ranking over the catalogue, seen items
   excluded): the sequential model with 1 and with 2 training workers, against
   most-popular, item co-occurrence and Spark ALS.
2. The synthetic flash-sale clickstream of ``make run``: both models against the
   same baselines.

Training examples/s is measured by the training worker (examples × epochs / fit
time). Usage: ``python -m bench.bench_training [--skip-synthetic] [--skip-movielens]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "training.md"
SPARKTF = str(Path(sys.executable).with_name("sparktf"))
METRICS = ("hr@10", "ndcg@10", "hr@50", "mrr", "coverage@10")

MOVIELENS = [
    "data.source=movielens",
    'train.models=["sequential"]',
    "train.epochs=30",
    "train.batch_size=256",
    "train.early_stopping_patience=3",
]


def _run(workdir: str, overrides: list[str]) -> tuple[Any, Any, float]:
    cmd = [SPARKTF, "run", "--workdir", workdir, "--master", "local[2]"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_training: `{' '.join(cmd)}` failed with {proc.returncode}")
    from sparktf.stages.state import EvaluateResult, TrainResult, read_result
    from sparktf.workdir import Workdir

    paths = Workdir(workdir)
    return read_result(paths, TrainResult), read_result(paths, EvaluateResult), seconds


def _rows(label: str, train: Any, evaluation: Any) -> list[str]:
    rows = []
    trained = {m.kind: m for m in train.models}
    for name, result in evaluation.results.items():
        m = result["overall"]
        info = trained.get(name)
        eps = f"{info.examples_per_second:,.0f}" if info and info.examples_per_second else "—"
        workers = str(info.workers) if info else "—"
        rows.append(
            f"| {label} | {name} | {workers} | "
            + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in METRICS)
            + f" | {eps} |"
        )
    return rows


def _mixture_row(workdir: str, label: str) -> str:
    """HR/NDCG of ranking by the generator's own next-view mixture (make run's data).

    Same test queries and exclusions as the evaluation stage (the user's train-part
    items and the history, never the target), over the generator's whole catalogue.
    It knows each user's tastes and the successor lists but not flash sales or
    session starts (they need the target's time), so it is a reference for what the
    sequential structure allows, not a strict ceiling: a model that picks up sales
    from the history can beat it on NDCG.
    """
    import numpy as np
    import pandas as pd

    from sparktf.config import GeneratorConfig
    from sparktf.data.generator import next_view_mixture
    from sparktf.evaluation.metrics import Exclusions, metrics_from_ranks, rank_targets

    features = Path(workdir) / "data" / "features"
    ex = pd.read_parquet(features / "examples", filters=[("split", "==", "test")])
    seen = dict(pd.read_parquet(features / "seen").itertuples(index=False, name=None))

    def index(ids: Any) -> np.ndarray:  # the generator names items i<n> and users u<n>
        return np.array([int(str(x)[1:]) for x in ids], dtype=np.int64)

    histories = [index(h) for h in ex["history"]]
    targets = index(ex["target"])
    excluded = [
        np.setdiff1d(np.union1d(index(seen.get(u, [])), h), [t])
        for u, h, t in zip(ex["user_id"], histories, targets, strict=True)
    ]
    ranks = np.concatenate(
        [
            rank_targets(
                next_view_mixture(GeneratorConfig(), index(ex["user_id"][i : i + 1000]), histories[i : i + 1000]),
                targets[i : i + 1000],
                Exclusions.from_lists(excluded[i : i + 1000]),
            )
            for i in range(0, len(ex), 1000)
        ]
    )
    m = metrics_from_ranks(ranks, (10, 50))
    return (
        f"| {label} | reference: the generator's own next-view mixture | — | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | "
        f"{m['hr@50']:.4f} | {m['mrr']:.4f} | — | — |"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-movielens", action="store_true")
    args = parser.parse_args()
    header = "| data | model | workers | " + " | ".join(METRICS) + " | train examples/s |"
    lines = [
        "# Training: quality against baselines and throughput",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start; Spark local[2]; CPU only.",
        "",
        header,
        "|---|---|---:|" + "---:|" * (len(METRICS) + 1),
    ]
    protocols = []
    with tempfile.TemporaryDirectory(prefix="sparktf-bench-training-") as tmp:
        if not args.skip_movielens:
            for workers in (1, 2):
                wd = os.path.join(tmp, f"ml-{workers}w")
                train, ev, secs = _run(wd, [*MOVIELENS, f"train.num_workers={workers}"])
                label = f"MovieLens-100K, {workers} worker{'s' if workers > 1 else ''} ({secs / 60:.1f} min)"
                rows = _rows(label, train, ev)
                # Baselines do not depend on the workers: show them once.
                lines += rows if workers == 1 else [r for r in rows if "| sequential |" in r]
                protocols.append(next(iter(ev["results"].values()))["protocol"]["sentence"])
        if not args.skip_synthetic:
            wd = os.path.join(tmp, "synthetic")
            train, ev, secs = _run(wd, [])
            label = f"synthetic flash sale, make run defaults ({secs / 60:.1f} min)"
            lines += [*_rows(label, train, ev), _mixture_row(wd, label)]
            protocols.append(next(iter(ev["results"].values()))["protocol"]["sentence"])
    lines += ["", *(f"- {p}" for p in dict.fromkeys(protocols))]
    lines += [
        "",
        "Commands: MovieLens `sparktf run --set data.source=movielens --set 'train.models=[\"sequential\"]' "
        "--set train.epochs=30 --set train.batch_size=256 --set train.early_stopping_patience=3 "
        "--set train.num_workers=N`; synthetic: `make run`.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
