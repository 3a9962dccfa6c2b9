"""The distributed launcher: launch overhead, steps/s for 1 vs 2 workers, recovery after a kill.

Run: ``.venv/bin/python -m bench.bench_launcher [--steps 60] [--hidden 256] [--repeats 3] [--threads-only]``

Everything trains :func:`sparktf.distributed.selftest.train_tiny` (a 2-layer MLP
on synthetic regression data, global batch 256) on one ``local[2]`` SparkSession.

References, measured in the same run:

* **bare TF process**: ``python -c`` that imports TensorFlow, builds a
  MultiWorkerMirroredStrategy with no cluster and calls ``train_tiny`` (with the
  same platform callbacks), with no Spark and no launcher. Its time from spawn to the first training step is the
  floor any launcher that starts a fresh TF process pays; its steps/s is the
  single-process throughput.
* **fresh launch**, for recovery: the time from the driver's call to the first
  step of a 2-worker run; a relaunch after a kill cannot be cheaper than that.

Measured:

1. launch overhead: driver call to the chief's first training step (SparkRunner,
   1 and 2 workers), against the bare TF process;
2. steps/s over the steady state (every epoch after the first), 1 vs 2 workers,
   against the bare process; the global batch is the same, so 2 workers each
   compute half of it and add an all-reduce per step;
3. thread pools (issue #22): 2 workers with TensorFlow's own pools (every core each)
   against the pools the launcher sizes (the worker's share of the executor), with
   1 worker as the reference; and the scaling that emulates machines on this one: 1
   worker pinned to 1 core against 2 workers pinned to a core each, the same batch per
   worker (examples/s); steps/s inside epochs, the sides alternated, median and range
   of ``--repeats`` runs;
4. recovery: worker 1's TF process is killed with SIGKILL after step 12 (last backup: step 10); time to
   the driver noticing (its ``relaunching`` line) and to the chief's first step of
   the second attempt.

Timings come from the step log ``train_tiny`` writes (wall clock per batch), so
the numbers are the job's own, not the benchmark's. Results go to
``bench/results/launcher.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 256

BARE = """
import sys, sparktf
from sparktf.tfenv import import_tensorflow
from sparktf.distributed.selftest import train_tiny
tf = import_tensorflow()
with tf.distribute.MultiWorkerMirroredStrategy().scope():
    train_tiny(epochs=3, steps_per_epoch=int(sys.argv[2]), global_batch_size=int(sys.argv[3]),
               hidden_units=int(sys.argv[4]), step_log_dir=sys.argv[1], verbose=0)
"""


def _steps(path: Path) -> list[tuple[str, int, float]]:
    from sparktf.distributed.selftest import read_step_log

    return read_step_log(str(path))


def _first_step(path: Path) -> float:
    return min(t for e, _, t in _steps(path) if e == "begin")


def _steady_rate(path: Path, steps_per_epoch: int) -> float:
    """Steps per second over every epoch after the first (compilation and warm-up excluded)."""
    ends = [(s, t) for e, s, t in _steps(path) if e == "end" and s > steps_per_epoch]
    (s0, t0), (s1, t1) = ends[0], ends[-1]
    return (s1 - s0) / (t1 - t0)


def bare_process(tmp: Path, steps: int, hidden: int) -> dict[str, float]:
    logs = tmp / "bare"
    # A run directory lets train_tiny use the same platform callbacks as the launched runs.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", SPARKTF_RUN_DIR=str(tmp / "bare-run"))
    env.pop("TF_CONFIG", None)
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", BARE, str(logs), str(steps), str(BATCH), str(hidden)],
        check=True,
        env=env,
        capture_output=True,
    )
    log = logs / "steps-attempt1-rank0.txt"
    return {"launch_s": _first_step(log) - t0, "steps_per_s": _steady_rate(log, steps)}


def _within_epoch_rates(path: Path, steps_per_epoch: int) -> list[float]:
    """Steps per second inside each epoch after the first, first step to last step of the
    epoch: no epoch boundary (its checkpoint saves) and no warm-up in any of them."""
    ends = {s: t for e, s, t in _steps(path) if e == "end"}
    rates = []
    for first in range(steps_per_epoch + 1, max(ends) + 1, steps_per_epoch):
        last = first + steps_per_epoch - 1
        if first in ends and last in ends and ends[last] > ends[first]:
            rates.append((last - first) / (ends[last] - ends[first]))
    return rates


def launched(
    spark: Any,
    tmp: Path,
    workers: int,
    steps: int,
    hidden: int,
    *,
    env: dict[str, str] | None = None,
    tag: str = "",
    pin_cpus: bool = False,
    worker_threads: int = 0,
    global_batch: int = BATCH,
) -> dict[str, Any]:
    from sparktf.distributed import SparkRunner
    from sparktf.distributed.selftest import train_tiny

    logs = tmp / f"run{workers}{tag}"
    t0 = time.time()
    SparkRunner(spark, log_sink=lambda _: None).run(
        train_tiny,
        num_workers=workers,
        env=env,
        pin_cpus=pin_cpus,
        worker_threads=worker_threads,
        run_dir=str(tmp / f"dir{workers}{tag}"),
        kwargs={
            "epochs": 3,
            "steps_per_epoch": steps,
            "global_batch_size": global_batch,
            "hidden_units": hidden,
            "step_log_dir": str(logs),
            "verbose": 0,
        },
    )
    log = logs / "steps-attempt1-rank0.txt"
    return {
        "launch_s": _first_step(log) - t0,
        "steps_per_s": _steady_rate(log, steps),
        "epoch_rates": _within_epoch_rates(log, steps),
    }


@dataclass(frozen=True)
class Side:
    """One side of an alternated comparison: a launch of ``train_tiny``."""

    label: str
    workers: int
    env: dict[str, str] | None = None
    pin_cpus: bool = False
    worker_threads: int = 0
    per_worker_batch: int = BATCH // 2


#: The thread-pool comparison (issue #22), one global batch of ``BATCH``: TensorFlow's
#: own pools (``0`` makes TensorFlow size a pool to every core, as before the launcher set
#: them; the user's environment wins over the launcher's) against the launcher's.
THREAD_SIDES: tuple[Side, ...] = (
    Side("1 worker, pools sized by the launcher (2 threads)", 1, per_worker_batch=BATCH),
    Side(
        "2 workers, TensorFlow's own pools (every core)",
        2,
        {"TF_NUM_INTRAOP_THREADS": "0", "TF_NUM_INTEROP_THREADS": "0"},
    ),
    Side("2 workers, pools sized by the launcher (1 thread each)", 2),
)

#: The scaling comparison that emulates machines on this one (issue #22): each worker
#: pinned to a core of its own with one thread, each with the same batch of ``BATCH``
#: (so two workers train on twice the examples per step, as two machines would).
SCALING_SIDES: tuple[Side, ...] = (
    Side("1 worker on 1 core (pinned, 1 thread)", 1, pin_cpus=True, worker_threads=1, per_worker_batch=BATCH),
    Side("2 workers on 2 cores (pinned, 1 thread each)", 2, pin_cpus=True, per_worker_batch=BATCH),
)


def compare(spark: Any, tmp: Path, sides: tuple[Side, ...], steps: int, hidden: int, repeats: int) -> list[str]:
    """Within-epoch steps/s and examples/s of ``sides``, alternated (rotated each repeat),
    median and range over ``repeats`` runs of each, against the first side."""
    import statistics

    rates: dict[str, list[float]] = {side.label: [] for side in sides}
    for r in range(repeats):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        for i, side in enumerate(order):
            out = launched(
                spark,
                tmp,
                side.workers,
                steps,
                hidden,
                env=side.env,
                tag=f"-{r}-{i}",
                pin_cpus=side.pin_cpus,
                worker_threads=side.worker_threads,
                global_batch=side.per_worker_batch * side.workers,
            )
            rates[side.label].append(statistics.median(out["epoch_rates"]))
    first = sides[0]
    base = statistics.median(rates[first.label]) * first.per_worker_batch * first.workers
    rows = [
        f"| side ({repeats} runs each, alternated; median of each run's within-epoch rates) | batch per worker "
        "| steps/s, median | min–max | examples/s | vs the first |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in sides:
        values = rates[side.label]
        med = statistics.median(values)
        examples = med * side.per_worker_batch * side.workers
        rows.append(
            f"| {side.label} | {side.per_worker_batch} | {med:.1f} | {min(values):.1f}–{max(values):.1f} "
            f"| {examples:,.0f} | {examples / base:.2f}x |"
        )
    return rows


def recovery(spark: Any, tmp: Path, steps: int, hidden: int, kill_after: int = 12) -> dict[str, float]:
    from sparktf.distributed import SparkRunner
    from sparktf.distributed.selftest import train_tiny

    logs = tmp / "kill"
    pid_file = logs / "paused-rank1.pid"
    marks: dict[str, float] = {}

    def killer() -> None:
        while not pid_file.exists():
            time.sleep(0.02)
        time.sleep(0.05)
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        marks["killed"] = time.time()

    def sink(line: str) -> None:
        if line.startswith("[sparktf] attempt 1:") and "relaunching" in line:
            marks.setdefault("noticed", time.time())

    threading.Thread(target=killer, daemon=True).start()
    result = SparkRunner(spark, log_sink=sink).run(
        train_tiny,
        num_workers=2,
        max_restarts=1,
        run_dir=str(tmp / "dirkill"),
        kwargs={
            "epochs": 2,
            "steps_per_epoch": steps,
            "global_batch_size": BATCH,
            "hidden_units": hidden,
            "backup_every_steps": 5,
            "step_log_dir": str(logs),
            "pause_at": (1, 1, kill_after),
            "verbose": 0,
        },
    )
    assert result.attempts == 2, result
    second = _steps(logs / "steps-attempt2-rank0.txt")
    resumed_at = min(t for e, _, t in second if e == "begin")
    first_step_again = min(s for e, s, _ in second if e == "end")
    return {
        "detect_s": marks["noticed"] - marks["killed"],
        "resume_s": resumed_at - marks["killed"],
        "repeated_steps": float(kill_after - (first_step_again - 1)),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pyspark

    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), load average {load:.1f} at start; "
        f"Python {platform.python_version()}, pyspark {pyspark.__version__}, TensorFlow {tf.__version__}, "
        "local[2], CPU only"
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch (3 epochs)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units of the MLP")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side of the thread-pool comparison")
    parser.add_argument(
        "--threads-only", action="store_true", help="only the thread-pool and pinned scaling comparisons"
    )
    args = parser.parse_args(argv)

    from sparktf.config import SparkConfig
    from sparktf.spark import get_spark

    notes = machine()
    tmp = Path(tempfile.mkdtemp(prefix="sparktf-bench-launcher-"))
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"), testing=True)
    try:
        # Warm Spark's Python workers and the OS file cache once, as any second run would find them.
        launched(spark, tmp / "warm", 1, 8, 16)
        threads = compare(spark, tmp / "threads", THREAD_SIDES, args.steps, args.hidden, args.repeats)
        threads += ["", *compare(spark, tmp / "scaling", SCALING_SIDES, args.steps, args.hidden, args.repeats)]
        if args.threads_only:
            text = f"# Launcher benchmark: thread pools and pinned scaling\n\n{notes}\n\n" + "\n".join(threads) + "\n"
            print(text)
            return text
        bare = bare_process(tmp, args.steps, args.hidden)
        one = launched(spark, tmp, 1, args.steps, args.hidden)
        two = launched(spark, tmp, 2, args.steps, args.hidden)
        rec = recovery(spark, tmp, args.steps, args.hidden)
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        "| measure | bare TF process (reference) | SparkRunner, 1 worker | SparkRunner, 2 workers |",
        "|---|---:|---:|---:|",
        f"| launch: call to first training step (s) | {bare['launch_s']:.1f} | {one['launch_s']:.1f} "
        f"| {two['launch_s']:.1f} |",
        f"| launch overhead over the reference (s) | 0 | {one['launch_s'] - bare['launch_s']:+.1f} "
        f"| {two['launch_s'] - bare['launch_s']:+.1f} |",
        f"| steady-state steps/s (global batch {BATCH}, hidden {args.hidden}) | {bare['steps_per_s']:.1f} "
        f"| {one['steps_per_s']:.1f} | {two['steps_per_s']:.1f} |",
        "",
        "| recovery after SIGKILL of worker 1 (2 workers, backup every 5 steps, killed after step 12) | seconds |",
        "|---|---:|",
        f"| kill to the driver relaunching | {rec['detect_s']:.1f} |",
        f"| kill to the chief's first step of attempt 2 | {rec['resume_s']:.1f} |",
        f"| reference: a fresh 2-worker launch (call to first step) | {two['launch_s']:.1f} |",
        f"| steps repeated after the restart | {rec['repeated_steps']:.0f} |",
        "",
        *threads,
    ]
    table = "\n".join(rows)
    text = f"# Launcher benchmark\n\n{notes}\n\n{table}\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "launcher.md").write_text(text, encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
