"""The task side's pure parts: the worker's environment and how a stopped worker is classified."""

from __future__ import annotations

import json

from sparktf.distributed.result import WorkerFailure, WorkerOutcome
from sparktf.distributed.task import TaskPlan, child_env, decode_failures, encode_failure, failure_of
from sparktf.distributed.worker import EXIT_ORPHANED


def _plan(**changes: object) -> TaskPlan:
    fields: dict[str, object] = dict(
        num_workers=2, attempt=2, run_id="r1", run_dir="/runs/r1", payload=b"", strategy="multi_worker_mirrored",
        max_value_bytes=1024, backup_every_steps=4, use_gpu=False, gpu_resource_name="gpu", gpu_slots=None,
        log_address=("127.0.0.1", 1), log_token="t", env=(("MY_VAR", "1"), ("TF_CPP_MIN_LOG_LEVEL", "0")),
    )  # fmt: skip
    fields.update(changes)
    return TaskPlan(**fields)  # type: ignore[arg-type]


def test_child_env_carries_cluster_devices_and_run_context() -> None:
    base = {"PATH": "/bin", "TF_CONFIG": "stale", "CUDA_VISIBLE_DEVICES": "0,1"}
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    env = child_env(base, _plan(), tf_config=tf_config, cuda="", scratch_dir="/tmp/s")
    assert json.loads(env["TF_CONFIG"]) == tf_config
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # CPU training hides the executor's GPUs
    assert env["TF_GRPC_REUSE_PORT"] == "1" and env["TF_USE_LEGACY_KERAS"] == "1"
    assert (env["SPARKTF_RUN_DIR"], env["SPARKTF_ATTEMPT"], env["SPARKTF_BACKUP_EVERY_STEPS"]) == ("/runs/r1", "2", "4")
    assert env["MY_VAR"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "0"  # the user's extras win over defaults
    assert env["PATH"] == "/bin" and base["TF_CONFIG"] == "stale"  # the task's own environment is untouched
    assert "TF_CONFIG" not in child_env(base, _plan(), tf_config=None, cuda="3", scratch_dir="/s")


def test_failures_survive_a_trip_through_sparks_error_text() -> None:
    f = WorkerFailure(1, "h", 2, "died", "killed by SIGKILL", ("line <b>", "x"), -9, "SIGKILL", 3.5)
    text = "org.apache.spark.SparkException: Job aborted ... " + encode_failure(f) + "\n\tat org.apache..."
    assert decode_failures(text) == [f]
    assert decode_failures("nothing here") == []


def test_failure_classification() -> None:
    def kind(**kw: object) -> WorkerFailure:
        args: dict[str, object] = dict(
            rank=1, host="h", attempt=1, returncode=1, outcome=None, tail=["x"], aborted=False
        )
        args.update(kw)
        return failure_of(**args)  # type: ignore[arg-type]

    raised = WorkerOutcome(
        1, False, 0.0, 1.0, error="ValueError: boom", traceback="Traceback\n  File x\nValueError: boom\n"
    )
    f = kind(outcome=raised)
    assert (f.kind, f.error, f.tail[-1]) == ("raised", "ValueError: boom", "ValueError: boom")
    f = kind(returncode=-9)
    assert (f.kind, f.signal, f.error) == ("died", "SIGKILL", "killed by SIGKILL")
    assert kind(returncode=3).error.startswith("exited with code 3 without a Python exception")
    assert "Spark task went away" in kind(returncode=EXIT_ORPHANED).error
    assert kind(returncode=-9, aborted=True).kind == "aborted"
    stuck = kind(returncode=-9, stuck=True, tail=["Current thread 0x1 (most recent call first):", '  File "t.py"'])
    assert (stuck.kind, stuck.tail[-1]) == ("stuck", '  File "t.py"')
