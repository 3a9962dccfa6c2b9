"""Regenerate BENCHMARKS.md: run every benchmark script, then stitch their tables.

Usage: ``make bench`` (all), or ``python -m bench.run_all tfrecord index`` (some),
or ``python -m bench.run_all --collect`` (only rebuild BENCHMARKS.md from the
tables already in bench/results/).

Each ``bench/bench_<area>.py`` measures against a reference in the same run and
writes ``bench/results/<area>.md``; this script runs them one after another (they
must not share the 2 cores), then writes BENCHMARKS.md with, per section, the
command that regenerates it, the date and the machine.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# Order = the pipeline's order; title, issue.
AREAS: dict[str, tuple[str, int]] = {
    "data": ("Data layer: generate and prepare throughput", 3),
    "tfrecord": ("Spark ⇄ TFRecord bridge", 4),
    "launcher": ("Distributed training launcher", 5),
    "evaluation": ("Full-catalogue evaluation", 6),
    "training": ("Training throughput and quality", 6),
    "quality": ("Quality under both protocols, both real data sets", 20),
    "tune": ("sparktf tune on MovieLens-100K, and its best config rerun", 20),
    "registry": ("Registry and validation gate", 7),
    "index": ("ANN index: ScaNN vs brute force", 8),
    "batch": ("Spark batch inference", 8),
    "serving": ("Online serving vs mlflow models serve", 9),
    "live": ("Online loop: events in, fresh recommendations out", 16),
    "experiment": ("Online experiments: statistics against the truth, the simulator's throughput", 17),
    "ope": ("Off-policy estimates (IPS, SNIPS, DR) against the logged truth", 18),
    "monitoring": ("Monitoring overhead: :recommend with monitoring on and off", 19),
    "drift": ("Drift alerts against the simulated world's truth", 19),
}


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def run(areas: list[str]) -> list[str]:
    failed = []
    for area in areas:
        script = ROOT / "bench" / f"bench_{area}.py"
        if not script.exists():
            print(f"bench: no {script.name}; skipped", file=sys.stderr)
            continue
        print(f"== bench {area}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"bench.bench_{area}"], cwd=ROOT).returncode
        if rc != 0:
            failed.append(area)
    return failed


def collect() -> str:
    lines = [
        "# Benchmarks",
        "",
        "Every row is produced by a script in `bench/` that measures sparktf against a reference in the same run "
        "(Parquet for TFRecord, a bare TF process for the launcher, brute force for ScaNN, one process for Spark "
        "inference, `mlflow models serve` for the server, a bare write + fsync + rename for the event collector). "
        "`make bench` reruns them all and rewrites this file; "
        "`python -m bench.run_all AREA` reruns one section.",
        "",
        "The numbers below were measured on the project's 2-core development machine while other jobs shared it "
        "(each section states the load); treat absolute values as indicative and the ratios as the result.",
        "",
    ]
    for area, (title, issue) in AREAS.items():
        path = RESULTS / f"{area}.md"
        if not path.exists():
            continue
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = path.read_text(encoding="utf-8").strip().splitlines()
        if body and body[0].startswith("#"):
            body = body[1:]
        lines += [
            f"## {title} (issue #{issue})",
            "",
            f"Command: `python -m bench.bench_{area}` · measured {stamp} · {_machine()}",
            "",
            *body,
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    only_collect = "--collect" in argv
    areas = [a for a in argv if not a.startswith("-")] or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"bench: unknown area(s) {unknown}; choose from {list(AREAS)}", file=sys.stderr)
        return 2
    failed = [] if only_collect else run(areas)
    (ROOT / "BENCHMARKS.md").write_text(collect(), encoding="utf-8")
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    if failed:
        print(f"bench: failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
