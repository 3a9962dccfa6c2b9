"""Shared fixtures and markers.

Markers: ``spark`` (needs Java and a SparkSession), ``slow``, ``gpu`` (skipped
without a visible GPU). One SparkSession on ``local[2]`` serves the whole test
session, as Spark allows one active session per process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sparktf  # noqa: F401  - sets TF_USE_LEGACY_KERAS before any test imports TF

pytest_plugins = ["tests.redis_support"]

# Every JVM the tests start (the session's, each CLI's, the standalone cluster's) runs
# short, small jobs, so it spends its CPU compiling and collecting rather than computing:
# the C1 compiler alone and the serial collector took the data-stage tests from 126 s to
# 80 s of CPU (wall 78 s -> 70 s), and `make test` is CPU-bound on 2 cores. Tests only;
# `java -version`'s "Picked up" line is skipped by the Java checks (tests/unit/test_java_version.py).
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss16m")


def _has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


#: The longest test files, longest first (``--durations`` of a serial clean-clone run,
#: 2026-12-07: 365 s, 238 s, 237 s, ...). `make test` hands whole files to 3 processes in
#: collection order (``--dist loadfile --no-loadscope-reorder``); started last, these made
#: a 9-minute tail with one process busy. Order only: a stale entry costs time, never a result.
LONGEST_FILES = (
    "test_examples.py",
    "test_stream.py",
    "test_pipeline_cluster.py",
    "test_models.py",
    "test_registry_flow.py",
    "test_recovery.py",
    "test_serving_degraded.py",
    "test_launcher_training.py",
    "test_registry_stage.py",
    "test_batch_inference.py",
    "test_tune.py",
    "test_experiment.py",
)


def _longest_files_first(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(item.path.name, i)
    items.sort(key=lambda it: (rank.get(it.path.name, len(rank)), first_seen[it.path.name]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _longest_files_first(items)  # a stable sort: within a file, the order is unchanged
    if not _has_gpu():
        skip = pytest.mark.skip(reason="no GPU visible (nvidia-smi -L)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one SparkSession of the test session, on local[2] with the UI off."""
    from sparktf.config import SparkConfig
    from sparktf.spark import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = SparkConfig(
        master="local[2]",
        app_name="sparktf-tests",
        driver_memory="2g",
        ui=False,
        log_level="ERROR",
        conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        },
    )
    session = get_spark(cfg, testing=True)
    yield session
    session.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _no_user_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's MLFLOW_TRACKING_URI must never leak into tests.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    os.environ.setdefault("SPARKTF_TESTING", "1")


_ROOT = Path(__file__).resolve().parent.parent
_LITTER = ("mlruns", "mlartifacts", "spark-warehouse", "metastore_db", "sparktf-work")
_BEFORE: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _BEFORE.update(name for name in _LITTER if (_ROOT / name).exists())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """`make test` leaves the checkout as it found it: a test that writes into the project
    root (an MLflow experiment made without an artifact location writes ./mlruns) fails
    the run, naming what it left."""
    left = [name for name in _LITTER if (_ROOT / name).exists() and name not in _BEFORE]
    if left:
        session.config.get_terminal_writer().line(
            f"ERROR: the tests left {', '.join(left)} in {_ROOT}; write under tmp_path instead.", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
