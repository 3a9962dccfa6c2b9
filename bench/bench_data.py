"""Generator and prepare (validate + features) throughput on local Spark, with driver memory.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_data [--sizes 1000000 10000000]``

Each size runs in a fresh Python process with its own Spark session (``local[2]``,
the default 4g driver), so the peak-memory numbers belong to that size alone. The
three stages run exactly as ``sparktf generate`` and ``sparktf prepare`` run them.

References, measured in the same process on the same data:

* **write floor** for ``generate``: ``spark.range(N)`` turned into the nine event
  columns with Spark SQL expressions (hash-made ids, no simulation) and written to
  Parquet: the cost of writing N events, with no model of shoppers behind them.
* **sort floor** for ``prepare``: read ``data/raw``, shuffle by user, sort each
  partition by user and time, write Parquet: the one shuffle any per-user sequence
  pipeline needs, with none of the validation, sessions, splits or vocabularies.

Driver memory: the Python driver's peak RSS (``ru_maxrss``) and the Spark JVM's
peak RSS (``VmHWM``; in local mode the JVM also runs the executors). Results go to
``bench/results/data.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = (1_000_000, 10_000_000)


def _overrides(n: int, workdir: str) -> list[str]:
    # About 50 events per user and 200 per item, as in a busy shop's month.
    return [
        f"workdir={json.dumps(workdir)}",
        'spark.master="local[2]"',
        "spark.ui=false",
        'spark.log_level="ERROR"',
        f"generator.num_events={n}",
        f"generator.num_users={max(1_000, n // 50)}",
        f"generator.num_items={max(5_000, n // 200)}",
    ]


def _jvm_peak_mb(spark: Any) -> float:
    pid = spark.sparkContext._gateway.proc.pid
    assert "java" in Path(f"/proc/{pid}/cmdline").read_text()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (the JVM and its Python workers),
    including the children they have already reaped."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        parent[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total / os.sysconf("SC_CLK_TCK")


def _timed(fn: Any, jvm: int, out: dict[str, Any], name: str) -> None:
    """Wall seconds and CPU seconds (driver plus Spark's processes) of ``fn()``."""
    t0, c0 = time.perf_counter(), _tree_cpu(jvm) + _self_cpu()
    fn()
    out[f"{name}_s"] = time.perf_counter() - t0
    out[f"{name}_cpu"] = _tree_cpu(jvm) + _self_cpu() - c0


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(n: int) -> dict[str, Any]:
    """Generate and prepare ``n`` events in this process; return timings and peaks."""
    from pyspark.sql import functions as F

    from sparktf.config import load_config
    from sparktf.spark import get_spark
    from sparktf.stages import features, generate, validate

    work = tempfile.mkdtemp(prefix=f"bench-data-{n}-")
    try:
        cfg = load_config(overrides=_overrides(n, work))
        spark = get_spark(cfg.spark)
        spark.range(1000).count()  # start-up is not throughput

        jvm = spark.sparkContext._gateway.proc.pid
        out: dict[str, Any] = {"events": n, "load_start": os.getloadavg()[0]}
        _timed(lambda: generate.run(cfg), jvm, out, "generate")
        _timed(lambda: validate.run(cfg), jvm, out, "validate")
        _timed(lambda: features.run(cfg), jvm, out, "features")
        stats = json.loads(Path(cfg.paths.features, "stats.json").read_text())
        out["examples"] = sum(stats["examples"].values())
        out["steps"] = stats["events"]["steps"]

        users, items = cfg.generator.num_users, cfg.generator.num_items
        floor = spark.range(n, numPartitions=max(2, n // 1_000_000)).select(
            F.timestamp_seconds(F.lit(1_767_225_600) + F.col("id") % (30 * 86_400)).alias("event_time"),
            F.concat(F.lit("u"), (F.abs(F.hash("id")) % users).cast("string")).alias("user_id"),
            F.concat(F.lit("i"), (F.abs(F.hash("id", F.lit(1))) % items).cast("string")).alias("item_id"),
            F.element_at(
                F.array(*map(F.lit, ("view", "add_to_cart", "purchase"))), (F.col("id") % 3 + 1).cast("int")
            ).alias("event_type"),
            F.lit(None).cast("string").alias("session_id"),
            F.concat(F.lit("cat_"), (F.col("id") % 40).cast("string")).alias("category"),
            F.concat(F.lit("brand_"), (F.col("id") % 200).cast("string")).alias("brand"),
            (F.abs(F.hash("id", F.lit(2))) % 10_000 / 100.0).alias("price"),
            F.lit(None).cast("string").alias("sale_id"),
        )
        _timed(lambda: floor.write.mode("overwrite").parquet(f"{work}/floor-write"), jvm, out, "write_floor")
        sort_floor = (
            spark.read.parquet(cfg.paths.raw).repartition("user_id").sortWithinPartitions("user_id", "event_time")
        )
        _timed(lambda: sort_floor.write.mode("overwrite").parquet(f"{work}/floor-sort"), jvm, out, "sort_floor")
        out["load_end"] = os.getloadavg()[0]

        out["python_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["jvm_peak_mb"] = _jvm_peak_mb(spark)
        spark.stop()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({cpu}), Spark local[2], load average {load:.1f} at start"


def _rate(n: int, s: float) -> str:
    return f"{n / s:,.0f}"


def _table(rows: list[dict[str, Any]], machine: str) -> str:
    lines = [
        "# Data layer: generate and prepare throughput",
        "",
        f"Machine: {machine}. Reference floors measured in the same process (see bench/bench_data.py).",
        "CPU s: CPU seconds of the driver, the Spark JVM and its Python workers; on two cores the wall",
        "time cannot go below CPU s / 2, and a shared machine (load average above 2) stretches it.",
        "",
        "| events | stage | wall s | events/s | CPU s | reference | ref. wall s | ref. CPU s | CPU vs ref. |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        n = r["events"]
        prep_s = r["validate_s"] + r["features_s"]
        prep_cpu = r["validate_cpu"] + r["features_cpu"]
        lines += [
            f"| {n:,} | generate | {r['generate_s']:.1f} | {_rate(n, r['generate_s'])} | {r['generate_cpu']:.0f} | "
            f"write floor | {r['write_floor_s']:.1f} | {r['write_floor_cpu']:.0f} | "
            f"{r['generate_cpu'] / r['write_floor_cpu']:.1f}× |",
            f"| {n:,} | validate | {r['validate_s']:.1f} | {_rate(n, r['validate_s'])} | {r['validate_cpu']:.0f} | | | | |",
            f"| {n:,} | features | {r['features_s']:.1f} | {_rate(n, r['features_s'])} | {r['features_cpu']:.0f} | | | | |",
            f"| {n:,} | prepare (validate + features) | {prep_s:.1f} | {_rate(n, prep_s)} | {prep_cpu:.0f} | "
            f"sort floor | {r['sort_floor_s']:.1f} | {r['sort_floor_cpu']:.0f} | {prep_cpu / r['sort_floor_cpu']:.1f}× |",
            f"| {n:,} | **generate + prepare** | **{r['generate_s'] + prep_s:.1f}** | "
            f"{_rate(n, r['generate_s'] + prep_s)} | {r['generate_cpu'] + prep_cpu:.0f} | | | | |",
        ]
    lines += [
        "",
        "| events | examples | steps | Python driver peak RSS (MB) | Spark JVM peak RSS (MB) | load average start → end |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['events']:,} | {r['examples']:,} | {r['steps']:,} | {r['python_peak_mb']:.0f} | "
            f"{r['jvm_peak_mb']:.0f} | {r['load_start']:.1f} → {r['load_end']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one)), flush=True)
        return 0
    machine = _machine()
    rows = []
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.bench_data", "--one", str(n)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not result:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            return 1
        rows.append(json.loads(result[-1].removeprefix("RESULT ")))
        print(f"{n:,} events done", flush=True)
    text = _table(rows, machine)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
