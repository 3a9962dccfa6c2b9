"""The launcher on real Spark (local[2]) with plain-Python train functions.

``strategy="custom"`` and train functions that never import TensorFlow keep
these fast: they test the barrier stage, TF_CONFIG, log streaming, error
reporting, restarts and the fail-fast paths, not training (see
test_launcher_training.py for that).
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark import cloudpickle

from sparktf.distributed import MirroredStrategyRunner, SparkRunner
from sparktf.errors import LauncherError, NotEnoughSlotsError, TrainingFailedError

# The executors cannot import this test module; ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.spark


def report_rank() -> dict[str, Any]:
    import json

    from sparktf.distributed import is_chief, num_workers, run_context, worker_index

    ctx = run_context()
    assert ctx is not None
    print(
        f"rank={worker_index()} chief={is_chief()} workers={num_workers()} "
        f"cuda={os.environ.get('CUDA_VISIBLE_DEVICES')!r} attempt={ctx.attempt}"
    )
    if hasattr(os, "sched_getaffinity"):
        print(f"affinity={sorted(os.sched_getaffinity(0))}")
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return {
        "rank": worker_index(),
        "workers": cluster.get("worker", []),
        "pid": os.getpid(),
        "run_dir": ctx.run_dir,
        "threads": (os.environ.get("TF_NUM_INTRAOP_THREADS"), os.environ.get("TF_NUM_INTEROP_THREADS")),
    }


def fail_on_rank_one(message: str) -> None:
    from sparktf.distributed import worker_index

    if worker_index() == 1:
        raise ValueError(message)
    time.sleep(120)  # the launcher has to stop this worker; the test would take minutes otherwise


def die_in_first_attempt(rank_to_kill: int) -> str:
    import signal

    from sparktf.distributed import run_context, worker_index

    ctx = run_context()
    assert ctx is not None
    if ctx.attempt == 1 and worker_index() == rank_to_kill:
        os.kill(os.getpid(), signal.SIGKILL)
    if ctx.attempt == 1:
        time.sleep(120)
    return f"finished in attempt {ctx.attempt}"


def test_each_worker_gets_its_rank_and_the_chiefs_value_comes_home(spark: Any, tmp_path: Path) -> None:
    lines: list[str] = []
    result = SparkRunner(spark, log_sink=lines.append).run(
        report_rank, num_workers=2, strategy="custom", run_dir=str(tmp_path)
    )
    assert result.value["rank"] == 0
    assert result.value["run_dir"] == str(tmp_path)
    workers = result.value["workers"]
    assert len(workers) == 2 and len(set(workers)) == 2
    assert all(w.startswith("127.0.0.1:") for w in workers)
    # Two workers on local[2]: one core each, so one thread in each of TensorFlow's pools.
    assert result.value["threads"] == ("1", "1")
    # Each worker is a fresh process, not the driver or a reused Python worker.
    assert result.value["pid"] != os.getpid()
    assert "[worker 0] rank=0 chief=True workers=2 cuda='' attempt=1" in lines
    assert "[worker 1] rank=1 chief=False workers=2 cuda='' attempt=1" in lines
    assert (result.attempts, result.failures, result.saved_model_path) == (1, (), None)
    assert [w.rank for w in result.workers] == [0, 1]
    assert all(w.task_started <= w.process_started <= w.train_started <= w.task_finished for w in result.workers)
    assert pickle.loads(pickle.dumps(result)) == result


def test_a_lone_worker_gets_the_executors_cores_and_worker_threads_overrides(spark: Any, tmp_path: Path) -> None:
    runner = SparkRunner(spark, log_sink=lambda _: None)
    alone = runner.run(report_rank, num_workers=1, strategy="custom", run_dir=str(tmp_path / "a"))
    assert alone.value["threads"] == ("2", "2")  # local[2]: both cores
    fixed = runner.run(report_rank, num_workers=1, strategy="custom", run_dir=str(tmp_path / "b"), worker_threads=3)
    assert fixed.value["threads"] == ("3", "2")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
def test_pinned_workers_run_on_cpus_of_their_own(spark: Any, tmp_path: Path) -> None:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("needs two usable CPUs")
    lines: list[str] = []
    runner = SparkRunner(spark, log_sink=lines.append)
    runner.run(report_rank, num_workers=2, strategy="custom", run_dir=str(tmp_path), pin_cpus=True)
    # local[2], two workers: one thread, so one CPU, each.
    assert f"[worker 0] affinity={[usable[0]]}" in lines and f"[worker 1] affinity={[usable[1]]}" in lines


def test_the_first_failing_worker_is_named_with_its_own_traceback(spark: Any, tmp_path: Path) -> None:
    lines: list[str] = []
    runner = SparkRunner(spark, log_sink=lines.append)
    with pytest.raises(TrainingFailedError) as err:
        runner.run(
            fail_on_rank_one,
            "bad batch 7 on purpose",
            num_workers=2,
            strategy="custom",
            max_restarts=2,
            run_dir=str(tmp_path),
        )
    text = str(err.value)
    assert text.startswith("Worker 1 (host 127.0.0.1) failed first, in attempt 1: it raised ValueError: bad batch 7")
    assert "in fail_on_rank_one" in text  # a frame of the worker's own traceback
    for cascade in ("Py4JJavaError", "SparkException", "py4j", "PythonException"):
        assert cascade not in text
    # A bug in train_fn is not retried, whatever max_restarts says.
    assert "Not retried" in text
    assert err.value.context["failures"] == (
        "attempt 1: worker 1 (127.0.0.1) raised ValueError: bad batch 7 on purpose",
    )
    assert (err.value.context["rank"], err.value.context["kind"]) == (1, "raised")
    # The traceback was also streamed live, prefixed with its rank.
    assert "[worker 1] ValueError: bad batch 7 on purpose" in lines


def test_a_killed_worker_is_relaunched_and_the_run_finishes(spark: Any, tmp_path: Path) -> None:
    lines: list[str] = []
    result = SparkRunner(spark, log_sink=lines.append).run(
        die_in_first_attempt, 1, num_workers=2, strategy="custom", max_restarts=1, run_dir=str(tmp_path)
    )
    assert result.value == "finished in attempt 2"
    assert (result.attempts, result.restarts) == (2, 1)
    assert result.failures == ("attempt 1: worker 1 (127.0.0.1) died: killed by SIGKILL",)
    assert any(
        ln.startswith("[sparktf] attempt 1: worker 1 (127.0.0.1) died: killed by SIGKILL; relaunching") for ln in lines
    )


def test_restarts_run_out(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(TrainingFailedError) as err:
        SparkRunner(spark, log_sink=lambda _: None).run(
            die_in_first_attempt, 0, num_workers=2, strategy="custom", max_restarts=0, run_dir=str(tmp_path)
        )
    assert str(err.value).startswith("Worker 0 (host 127.0.0.1) failed first, in attempt 1: it died: killed by SIGKILL")
    assert "Gave up after 0 restarts" in str(err.value)


def test_too_many_workers_fail_fast_with_the_numbers(spark: Any) -> None:
    lines: list[str] = []
    with pytest.raises(NotEnoughSlotsError) as err:
        SparkRunner(spark, log_sink=lines.append).run(report_rank, num_workers=3, strategy="custom")
    assert "asked for 3 workers" in str(err.value) and "only 2 task slots" in str(err.value)
    assert "local[N] with N >= 3" in str(err.value)
    assert (err.value.context["requested"], err.value.context["total"]) == (3, 2)
    # Refused before submitting anything (Spark would retry the barrier stage for ~10 minutes):
    # no attempt was launched, and it is not the post-launch timeout's "Only k of n tasks started".
    assert not any("launching" in ln for ln in lines)
    assert "started" not in err.value.context


def test_a_return_value_too_large_to_send_home_is_refused(spark: Any, tmp_path: Path) -> None:
    def big() -> bytes:
        return b"x" * 2_000_000

    with pytest.raises(TrainingFailedError) as err:
        SparkRunner(spark, log_sink=lambda _: None).run(big, num_workers=2, strategy="custom", run_dir=str(tmp_path))
    assert "over the limit of 1,048,576 bytes" in str(err.value)
    assert err.value.context["rank"] == 0


def test_gpu_training_without_spark_gpu_resources_says_what_to_set(spark: Any) -> None:
    with pytest.raises(LauncherError, match=r"spark\.task\.resource\.gpu\.amount is not set"):
        SparkRunner(spark).run(report_rank, num_workers=2, use_gpu=True, strategy="custom")
    # The drop-in defaults to GPU training, as the original does.
    with pytest.raises(LauncherError, match=r"use_gpu=False for CPU training"):
        MirroredStrategyRunner(num_slots=2, spark=spark)


def test_local_mode_runs_in_this_process_with_the_same_result_type(spark: Any, tmp_path: Path) -> None:
    result = SparkRunner(spark, log_sink=lambda _: None).run(
        report_rank, num_workers=0, strategy="custom", run_dir=str(tmp_path)
    )
    assert result.value["pid"] == os.getpid()
    assert (result.value["rank"], result.value["workers"], result.num_workers) == (0, [], 0)
    assert "SPARKTF_RUN_DIR" not in os.environ  # the run context is restored afterwards

    def boom() -> None:
        raise KeyError("missing column")

    with pytest.raises(TrainingFailedError, match=r"train_fn raised KeyError: 'missing column' \(local mode") as err:
        SparkRunner(spark, log_sink=lambda _: None).run(boom, num_workers=0, strategy="custom", run_dir=str(tmp_path))
    assert isinstance(err.value.__cause__, KeyError)


def test_slots_busy_with_another_job_fail_fast(spark: Any) -> None:
    sc = spark.sparkContext

    def hold(_: Any) -> Any:
        time.sleep(60)
        yield 1

    def background() -> None:
        sc.setJobGroup("sparktf-test-hold", "holds one slot", interruptOnCancel=True)
        try:
            sc.parallelize([0], 1).mapPartitions(hold).collect()
        except Exception:  # noqa: BLE001 - cancelled below
            pass

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            (info := sc.statusTracker().getStageInfo(s)) and info.numActiveTasks
            for s in sc.statusTracker().getActiveStageIds()
        ):
            time.sleep(0.1)
        with pytest.raises(NotEnoughSlotsError, match=r"only 1 of the 2 task slots on local\[2\] are free \(1 busy"):
            SparkRunner(spark).run(report_rank, num_workers=2, strategy="custom")
    finally:
        sc.cancelJobGroup("sparktf-test-hold")
        thread.join(60)
