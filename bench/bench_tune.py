"""`sparktf tune` on MovieLens-100K within its default budget, and its best config rerun.

Runs ``sparktf tune --config configs/movielens.toml`` in a fresh workdir (the default
``[tune]``: 12 trials, 2 at a time, 18 minutes), then ``sparktf run --config
<workdir>/tune/best.toml`` as the study prints it, and compares the best trial's
validation NDCG@10 with the rerun's (the best epoch of each; same data, same seed, same
settings: the difference is the run-to-run noise of CPU training), and the rerun's test
metrics under both protocols. The reference is the study's own best trial.

Usage: ``python -m bench.bench_tune [--workdir DIR]``; the table goes to
``bench/results/tune.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "tune.md"
SPARKTF = str(Path(sys.executable).with_name("sparktf"))


def _sparktf(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([SPARKTF, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_tune: sparktf {' '.join(args)} failed with {proc.returncode}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sparktf-bench-tune-") as tmp:
        workdir = args.workdir or os.path.join(tmp, "work")
        tune_s = _sparktf("tune", "--config", "configs/movielens.toml", "--workdir", workdir)
        study = json.loads(Path(workdir, "tune", "trials.json").read_text())
        best_path = os.path.join(workdir, "tune", "best.toml")
        run_s = _sparktf("run", "--config", best_path)
        from sparktf.stages.state import EvaluateResult, TrainResult, read_result
        from sparktf.workdir import Workdir

        paths = Workdir(workdir)
        trained = read_result(paths, TrainResult).models[0]
        evaluation = read_result(paths, EvaluateResult)
    rerun = max(v for v in trained.history.get("val_ndcg_at_10", [math.nan]))
    counts = {s: sum(1 for t in study["trials"] if t["state"] == s) for s in ("complete", "pruned", "failed")}
    test = {
        p: r[trained.kind]["overall"]
        for p, r in (("product", evaluation.results), ("literature", evaluation.literature))
    }
    lines = [
        "# sparktf tune",
        "",
        f"Load average {load:.1f} at start; Spark local[2]; CPU only. Commands: "
        f"`sparktf tune --config configs/movielens.toml --workdir W`, then `sparktf run --config W/tune/best.toml`.",
        "",
        "| study | trials (complete / pruned / failed) | wall time | best trial | best val NDCG@10 | rerun val NDCG@10 | rerun test HR@10 / NDCG@10, product | literature |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| {study['study_name']} ({study['stop_reason']}) | {len(study['trials'])} ({counts['complete']} / "
        f"{counts['pruned']} / {counts['failed']}) | {tune_s / 60:.1f} min (study {study['seconds'] / 60:.1f} min) | "
        f"{study['best_trial']} | {study['best_value']:.4f} | {rerun:.4f} ({run_s / 60:.1f} min run) | "
        f"{test['product']['hr@10']:.4f} / {test['product']['ndcg@10']:.4f} | "
        f"{test['literature']['hr@10']:.4f} / {test['literature']['ndcg@10']:.4f} |",
    ]
    best = study["trials"][study["best_trial"]]
    lines += [
        "",
        "Best settings: "
        + ", ".join(
            f"train.{k} = {v:.4g}" if isinstance(v, float) else f"train.{k} = {v}" for k, v in best["params"].items()
        )
        + ".",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
