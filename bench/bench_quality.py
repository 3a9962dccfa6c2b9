"""Model quality under both protocols on both real data sets, with each training's wall time.

Runs the real pipeline (``sparktf run --config configs/<data>.toml``, 1 training worker;
on MovieLens a second time with the GRU, :data:`RUNS`) in fresh workdirs and reads what the stages recorded (``state/train.json``,
``state/evaluate.json``): every model and baseline under the product protocol and the
literature protocol (:mod:`sparktf.evaluation.protocols`), each row labelled with its
protocol, and the wall time of each model's training (the launch, as the train stage
times it).

Usage: ``python -m bench.bench_quality [--data movielens instacart] [--set section.field=value ...]``.
The table is printed and written to ``bench/results/quality.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "quality.md"
SPARKTF = str(Path(sys.executable).with_name("sparktf"))
METRICS = ("hr@10", "ndcg@10", "hr@50", "mrr", "coverage@10")
DATA = {"movielens": "MovieLens-100K", "instacart": "Instacart sample"}
#: Per data set, the runs: a label and the overrides of ``configs/<data>.toml``.
RUNS: dict[str, list[tuple[str, list[str]]]] = {
    "movielens": [
        ("sasrec", []),
        # The GRU with its own settings: every example (190 steps per epoch at batch 256), the
        # learning rate decaying per epoch, a separate output table.
        (
            "GRU",
            [
                'train.models=["sequential"]',
                "train.batch_size=256",
                "train.learning_rate=0.005",
                "train.lr_decay=0.9",
                "train.epochs=30",
                "train.early_stopping_patience=3",
                "train.tie_embeddings=false",
            ],
        ),
    ],
    "instacart": [("sasrec", [])],
}


def _run(config: Path, workdir: str, overrides: list[str]) -> tuple[Any, Any, float]:
    cmd = [SPARKTF, "run", "--config", str(config), "--workdir", workdir]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_quality: `{' '.join(cmd)}` failed with {proc.returncode}")
    from sparktf.stages.state import EvaluateResult, TrainResult, read_result
    from sparktf.workdir import Workdir

    paths = Workdir(workdir)
    return read_result(paths, TrainResult), read_result(paths, EvaluateResult), seconds


def _rows(label: str, train: Any, evaluation: Any, *, baselines: bool) -> tuple[list[str], list[str]]:
    trained = {m.kind: m for m in train.models}
    rows, sentences = [], []
    for protocol, results in (("product", evaluation.results), ("literature", evaluation.literature)):
        for name, result in results.items():
            if name not in trained and not baselines:
                continue
            m = result["overall"]
            info = trained.get(name)
            wall = f"{info.train_seconds / 60:.1f} min ({info.epochs_run} epochs)" if info else "—"
            rows.append(
                f"| {label} | {protocol} | {name} | "
                + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in METRICS)
                + f" | {wall} |"
            )
        sentences.append(next(iter(results.values()))["protocol"]["sentence"])
    return rows, sentences


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["movielens", "instacart"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Quality under both protocols, both real data sets",
        "",
        f"Measured {started}.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start; Spark local[2]; 1 training worker; CPU only.",
        "",
        "| data | protocol | model | " + " | ".join(METRICS) + " | training wall time |",
        "|---|---|---|" + "---:|" * len(METRICS) + "---:|",
    ]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sparktf-bench-quality-") as tmp:
        for data in args.data:
            config = ROOT / "configs" / f"{data}.toml"
            for i, (label, extra) in enumerate(RUNS[data]):
                overrides = [*extra, *args.overrides]
                train, ev, secs = _run(config, os.path.join(tmp, f"{data}-{i}"), overrides)
                # The baselines are the same in every run of a data set: shown with the first.
                rows, sentences = _rows(f"{DATA[data]}, {label} run ({secs / 60:.1f} min)", train, ev, baselines=i == 0)
                lines += rows
                if i == 0:
                    notes += [f"- {DATA[data]}: {s}" for s in sentences]
                sets = "".join(f" --set '{o}'" for o in overrides)
                notes.append(f"- {DATA[data]}, {label}: `sparktf run --config configs/{data}.toml{sets}`")
    lines += ["", *notes]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
