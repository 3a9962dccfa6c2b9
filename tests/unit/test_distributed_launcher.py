"""SparkRunner's checks that happen before Spark is touched, and its fallbacks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sparktf.config import TrainConfig
from sparktf.distributed import SparkRunner
from sparktf.distributed.launcher import _lost_worker
from sparktf.distributed.task import TaskPlan, _cuda_for_task
from sparktf.errors import ConfigError, LauncherError


def _noop() -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_workers": -1}, r"num_workers = -1 is not allowed; expected 0 \(in this process\) or more"),
        ({"max_restarts": -2}, r"max_restarts = -2 is not allowed"),
        ({"backup_every_steps": -5}, r"backup_every_steps = -5 is not allowed"),
        ({"launch_timeout_s": 0}, r"launch_timeout_s = 0.0 is not allowed"),
        ({"strategy": "parameter_server"}, r"strategy = 'parameter_server' is not allowed; expected one of"),
        ({"gpu_slots": 0}, r"gpu_slots = 0 is not allowed"),
    ],
)
def test_bad_settings_stop_before_spark_is_touched(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SparkRunner().run(_noop, **kwargs)  # type: ignore[arg-type]


def test_train_fn_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="train_fn = 42 is not callable"):
        SparkRunner().run(42)  # type: ignore[arg-type]


def test_config_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"train.backup_every_steps = -1 is not allowed"):
        TrainConfig(backup_every_steps=-1)
    with pytest.raises(ConfigError, match=r"train.launch_timeout_s = 0.0 is not allowed"):
        TrainConfig(launch_timeout_s=0)


def test_a_failure_nobody_reported_is_read_from_sparks_error() -> None:
    spark_error = (
        "An error occurred while calling collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Could not recover from a failed "
        "barrier ResultStage. Most recent failure reason: Stage failed because barrier task ResultTask(3, 1) "
        "finished unsuccessfully.\nExecutorLostFailure (executor 2 exited caused by one of the running tasks)"
    )
    f = _lost_worker(spark_error, 2, {1: "10.0.0.9"})
    assert (f.rank, f.host, f.attempt, f.kind) == (1, "10.0.0.9", 2, "lost")
    assert f.error.startswith("Job aborted due to stage failure")
    assert _lost_worker("", 1, {}).rank == -1


@dataclass
class _Resource:
    addresses: list[str]


def _plan(**changes: object) -> TaskPlan:
    fields: dict[str, object] = dict(
        num_workers=2, attempt=1, run_id="r", run_dir="/r", payload=b"", strategy="custom", max_value_bytes=1,
        backup_every_steps=0, use_gpu=True, gpu_resource_name="gpu", gpu_slots=None, log_address=("h", 1),
        log_token="t",
    )  # fmt: skip
    fields.update(changes)
    return TaskPlan(**fields)  # type: ignore[arg-type]


def test_gpus_of_a_task_become_its_workers_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _cuda_for_task(_plan(use_gpu=False), {"gpu": _Resource(["0"])}, 0) == ""
    assert _cuda_for_task(_plan(), {"gpu": _Resource(["2", "3"])}, 1) == "2,3"
    # num_slots=3 over 2 tasks: worker 0 takes 2 GPUs, worker 1 takes 1.
    assert _cuda_for_task(_plan(gpu_slots=3), {"gpu": _Resource(["4", "5"])}, 0) == "4,5"
    assert _cuda_for_task(_plan(gpu_slots=3), {"gpu": _Resource(["4", "5"])}, 1) == "4"
    with pytest.raises(LauncherError, match=r"given no 'gpu' resource \(it has: none\)"):
        _cuda_for_task(_plan(), {}, 0)
