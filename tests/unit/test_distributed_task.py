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


def test_thread_env_gives_each_worker_its_share_of_the_executor() -> None:
    from sparktf.distributed.task import thread_env

    def intra(**kw: object) -> tuple[str, str]:
        args: dict[str, object] = dict(fixed=0, task_cpus=1, executor_cores=2, tasks_here=2, usable=64)
        args.update(kw)
        env = thread_env(**args)  # type: ignore[arg-type]
        return env["TF_NUM_INTRAOP_THREADS"], env["TF_NUM_INTEROP_THREADS"]

    assert intra() == ("1", "1")  # local[2], two workers: one core each
    assert intra(tasks_here=1) == ("2", "2")  # local[2], one worker: both cores
    assert intra(executor_cores=16, tasks_here=3) == ("5", "2")
    assert intra(executor_cores=None, task_cpus=4) == ("4", "2")  # the cluster decides: spark.task.cpus
    assert intra(executor_cores=2, tasks_here=4, task_cpus=1) == ("1", "1")  # never below one
    assert intra(executor_cores=8, tasks_here=2, task_cpus=1, usable=2) == ("2", "2")  # not above the affinity
    assert intra(task_cpus=3, executor_cores=4, tasks_here=2) == ("3", "2")  # never below spark.task.cpus
    assert intra(fixed=6) == ("6", "2")  # train.worker_threads


def test_child_env_threads_yield_to_the_users_and_the_executors_settings() -> None:
    threads = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env = child_env({"PATH": "/bin"}, _plan(), tf_config=None, cuda="", scratch_dir="/s", threads=threads)
    assert (env["TF_NUM_INTRAOP_THREADS"], env["TF_NUM_INTEROP_THREADS"]) == ("1", "1")
    user = _plan(env=(("TF_NUM_INTRAOP_THREADS", "7"),))
    env = child_env({"TF_NUM_INTEROP_THREADS": "3"}, user, tf_config=None, cuda="", scratch_dir="/s", threads=threads)
    assert (env["TF_NUM_INTRAOP_THREADS"], env["TF_NUM_INTEROP_THREADS"]) == ("7", "3")


def test_executor_cores_where_the_driver_can_know_them() -> None:
    import os

    from sparktf.distributed.launcher import executor_cores

    assert executor_cores("local[2]", None) == 2
    assert executor_cores("local[3,2]", "8") == 3  # local mode: the one executor is the driver
    assert executor_cores("local", None) == 1
    assert executor_cores("local[*]", None) == (os.cpu_count() or 1)
    assert executor_cores("local-cluster[2, 3, 1024]", None) == 3
    assert executor_cores("spark://h:7077", "4") == 4
    assert executor_cores("spark://h:7077", None) is None
    assert executor_cores("yarn", " ") is None


def test_pinned_cpus_give_each_slot_its_own_cores() -> None:
    from sparktf.distributed.task import pinned_cpus

    assert [pinned_cpus([0, 1], slot, 1) for slot in (0, 1)] == [[0], [1]]
    assert [pinned_cpus([3, 2, 5, 4], slot, 2) for slot in (0, 1)] == [[2, 3], [4, 5]]
    assert pinned_cpus([0, 1], 2, 1) == [0]  # more slots than CPUs: wrap around
    assert pinned_cpus([0, 1], 0, 4) == [0, 1]  # never more than there are
    assert pinned_cpus([], 0, 1) == []


def test_the_pinned_share_reads_the_threads_the_environment_sets() -> None:
    from sparktf.distributed.task import _threads_of

    assert _threads_of("3", 1) == 3  # the user's setting wins
    assert _threads_of(None, 2) == 2 and _threads_of("", 2) == 2
    assert _threads_of("0", 2) == 2  # TensorFlow's own choice: pin the launcher's share
    assert _threads_of("many", 2) == 2  # not a number: never a crash in the barrier task
