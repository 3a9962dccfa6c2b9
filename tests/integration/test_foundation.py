"""The foundation against the real things: Spark, TensorFlow, the installed CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SPARKTF = str(Path(sys.executable).with_name("sparktf"))


@pytest.mark.spark
def test_session_factory_settings(spark: Any) -> None:
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.getConf().get("spark.ui.enabled") == "false"
    # Arrow really is used: toPandas of a small frame goes through it without fallback.
    assert spark.range(10).toPandas()["id"].sum() == 45


@pytest.mark.spark
def test_executors_get_legacy_keras_even_before_importing_sparktf(spark: Any) -> None:
    def probe(_: Any) -> Any:
        import os

        before = os.environ.get("TF_USE_LEGACY_KERAS")
        import sparktf  # noqa: F401

        yield (before, os.environ.get("TF_USE_LEGACY_KERAS"))

    out = spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()
    assert out == [("1", "1"), ("1", "1")]


@pytest.mark.spark
@pytest.mark.slow
def test_tensorflow_in_an_executor_uses_tf_keras(spark: Any) -> None:
    def probe(_: Any) -> Any:
        from sparktf.tfenv import keras_version

        yield keras_version()

    versions = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()
    assert versions[0].startswith("2.20")


@pytest.mark.slow
def test_env_command_reports_versions_and_gpus() -> None:
    out = subprocess.run([SPARKTF, "env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for key in ("python", "java", "pyspark", "tensorflow", "tf-keras", "mlflow", "scann", "gpus (tensorflow)"):
        assert key in out.stdout
    assert "2.20" in out.stdout  # tensorflow / tf-keras pins


def test_check_passes_on_this_machine(tmp_path: Path) -> None:
    out = subprocess.run(
        [SPARKTF, "check", "--workdir", str(tmp_path / "w"), "--master", "local[2]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All checks passed" in out.stdout


def test_check_fails_on_too_many_workers_for_local_cores(tmp_path: Path) -> None:
    out = subprocess.run(
        [SPARKTF, "check", "--workdir", str(tmp_path / "w"), "--master", "local[2]", "--set", "train.num_workers=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "train.num_workers = 4" in out.stdout and "local[4]" in out.stdout


def test_run_plan_prints_the_pipeline_and_runs_nothing(tmp_path: Path) -> None:
    out = subprocess.run(
        [SPARKTF, "run", "--plan", "--workdir", str(tmp_path / "w")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for stage in (
        "generate",
        "validate",
        "features",
        "tfrecords",
        "train",
        "evaluate",
        "register",
        "index",
        "recommend",
    ):
        assert stage in out.stdout
    assert "nothing was run" in out.stdout
    assert not (tmp_path / "w").exists()
