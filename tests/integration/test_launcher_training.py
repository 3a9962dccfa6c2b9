"""Real MultiWorkerMirroredStrategy training through the launcher.

One worker, two workers on ``local[2]``, two workers on a Spark standalone
cluster, and the in-process local mode all train
:func:`sparktf.distributed.selftest.train_tiny` (fixed data, fixed seed) and
must reach the same per-epoch losses. Then: a worker process killed with
SIGKILL mid-epoch, the chief-only-checkpoint crash, and the seed package's own
README example through the drop-in runner.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark import cloudpickle

from sparktf.distributed import MirroredStrategyRunner, SparkRunner, TrainingResult
from sparktf.distributed.selftest import read_step_log, train_tiny
from sparktf.errors import TrainingFailedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.spark

EPOCHS = 3
LOSS_TOLERANCE = 1e-4  # float summation order differs between 1 and N replicas, nothing else


@pytest.fixture(scope="module")
def one_worker(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """The reference: train_tiny on a single barrier task."""
    run_dir = tmp_path_factory.mktemp("one-worker")
    return SparkRunner(spark, log_sink=lambda _: None).run(
        train_tiny, num_workers=1, run_dir=str(run_dir), kwargs={"epochs": EPOCHS}
    )


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_two_workers_on_local2_train_to_the_same_loss_as_one(
    spark: Any, one_worker: TrainingResult, tmp_path: Path
) -> None:
    lines: list[str] = []
    result = SparkRunner(spark, log_sink=lines.append).run(
        train_tiny, num_workers=2, run_dir=str(tmp_path), kwargs={"epochs": EPOCHS, "checkpoint_every_epoch": True}
    )
    assert len(one_worker.history["loss"]) == EPOCHS
    assert result.history["loss"] == pytest.approx(one_worker.history["loss"], rel=LOSS_TOLERANCE)
    assert result.history["loss"][-1] < result.history["loss"][0] / 2  # it did learn
    assert result.final_metrics == {"loss": result.history["loss"][-1]}
    assert (result.num_workers, result.attempts) == (2, 1)

    # The chief wrote the model and its per-epoch checkpoints; the other worker left nothing in run_dir.
    files = _files(str(tmp_path))
    assert result.saved_model_path == str(tmp_path / "model" / "saved_model")
    assert "model/saved_model/saved_model.pb" in files
    assert "model/weights/weights.index" in files
    assert [f for f in files if f.startswith("checkpoints/") and f.endswith(".index")] == [
        f"checkpoints/weights-epoch{e:03d}.index" for e in range(1, EPOCHS + 1)
    ]
    assert not [f for f in files if "workertemp" in f]
    assert not [f for f in files if f.startswith("backup/")]  # removed once every worker finished
    # Both workers' output was streamed, prefixed with the rank.
    for rank in (0, 1):
        assert f"[worker {rank}] Epoch 1/{EPOCHS}" in lines


def test_local_mode_trains_in_this_process_to_the_same_loss(one_worker: TrainingResult, tmp_path: Path) -> None:
    result = SparkRunner(log_sink=lambda _: None).run(
        train_tiny, num_workers=0, run_dir=str(tmp_path), kwargs={"epochs": EPOCHS, "verbose": 0}
    )
    assert result.num_workers == 0
    assert result.history["loss"] == pytest.approx(one_worker.history["loss"], rel=LOSS_TOLERANCE)
    assert os.path.exists(tmp_path / "model" / "saved_model" / "saved_model.pb")


@pytest.mark.slow
def test_a_worker_killed_mid_training_resumes_from_the_last_backup(spark: Any, tmp_path: Path) -> None:
    steps_per_epoch, backup_every, kill_after = 8, 4, 6
    logs = tmp_path / "steps"
    pid_file = logs / "paused-rank1.pid"
    killed: dict[str, float] = {}

    def killer() -> None:
        # Worker 1 of attempt 1 writes its pid after step 6 and waits; kill it from outside.
        deadline = time.monotonic() + 400
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            killed["at"] = time.time()

    threading.Thread(target=killer, daemon=True).start()
    lines: list[str] = []
    result = SparkRunner(spark, log_sink=lines.append).run(
        train_tiny,
        num_workers=2,
        max_restarts=2,
        run_dir=str(tmp_path / "run"),
        kwargs={
            "epochs": 2,
            "steps_per_epoch": steps_per_epoch,
            "backup_every_steps": backup_every,
            "step_log_dir": str(logs),
            "pause_at": (1, 1, kill_after),
        },
    )
    assert "at" in killed, "worker 1 never reached the kill point"
    assert (result.attempts, result.failures) == (2, ("attempt 1: worker 1 (127.0.0.1) died: killed by SIGKILL",))

    def steps(attempt: int) -> list[int]:
        return [s for e, s, _ in read_step_log(str(logs / f"steps-attempt{attempt}-rank0.txt")) if e == "end"]

    first, second = steps(1), steps(2)
    last_backup = (kill_after // backup_every) * backup_every
    assert first == list(range(1, kill_after + 1))
    # Resumed right after the chief's last backup, and ran to the end.
    assert second == list(range(last_backup + 1, 2 * steps_per_epoch + 1))
    repeated = sorted(set(first) & set(second))
    assert repeated == list(range(last_backup + 1, kill_after + 1))
    assert len(repeated) == kill_after - last_backup <= backup_every - 1
    assert len(result.history["loss"]) == 2
    assert os.path.exists(tmp_path / "run" / "model" / "saved_model" / "saved_model.pb")
    assert any(ln.startswith("[worker 1, attempt 2] Epoch 2/2") for ln in lines)


@pytest.mark.slow
def test_a_chief_only_checkpoint_crashes_plain_mwms_and_the_error_says_why(spark: Any, tmp_path: Path) -> None:
    # The classic mistake: ModelCheckpoint on the chief only. The platform's callbacks (used in the
    # two-worker test above, which saves checkpoints every epoch) are the fix; this shows the failure.
    with pytest.raises(TrainingFailedError) as err:
        SparkRunner(spark, log_sink=lambda _: None).run(
            train_tiny,
            num_workers=2,
            max_restarts=2,
            run_dir=str(tmp_path),
            kwargs={"epochs": 2, "use_platform_callbacks": False, "chief_only_checkpoint": True},
        )
    text = str(err.value)
    assert "Shape mismatch in the collective" in text.splitlines()[0]
    assert "Use sparktf.distributed.callbacks() and save_model() on every worker" in text
    # Deterministic, so not retried.
    assert len(err.value.context["failures"]) == 1


def chief_creates_variables_alone() -> dict[str, bool]:
    """Trains, then builds a second model on the chief only, inside the strategy's scope.

    Creating a variable under MultiWorkerMirroredStrategy broadcasts its initial
    value to every worker, so the chief waits forever for peers that have already
    returned: the hang behind "export a plain copy on the chief".
    """
    import tensorflow as tf

    from sparktf.distributed import is_chief

    model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(tf.zeros((16, 2)), tf.zeros((16, 1)), epochs=1, verbose=0)
    if is_chief():
        copy = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(1)])
        copy.set_weights(model.get_weights())
    return {"ok": True}


@pytest.mark.slow
def test_a_worker_stuck_in_a_collective_only_it_runs_is_stopped_with_its_stacks(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(TrainingFailedError) as err:
        SparkRunner(spark, log_sink=lambda _: None).run(
            chief_creates_variables_alone, num_workers=2, max_restarts=2, run_dir=str(tmp_path), finish_timeout_s=5
        )
    text = str(err.value)
    assert text.startswith("Worker 0 (host 127.0.0.1) failed first, in attempt 1: it got stuck: still running")
    # Its own Python stack, taken while it was blocked inside TensorFlow, shows the line that hangs.
    assert "chief_creates_variables_alone" in text
    assert "do not create variables, save, evaluate or predict on the chief alone" in text
    assert (err.value.context["kind"], len(err.value.context["failures"])) == ("stuck", 1)  # not retried


def seed_readme_train() -> Any:
    """spark-tensorflow-distributor's README example, with synthetic MNIST-shaped data instead of tfds."""
    import numpy as np
    import tensorflow as tf

    BUFFER_SIZE = 10000
    BATCH_SIZE = 64

    def make_datasets_unbatched() -> Any:
        # Scaling MNIST data from (0, 255] to (0., 1.]
        def scale(image: Any, label: Any) -> Any:
            image = tf.cast(image, tf.float32)
            image /= 255
            return image, label

        rng = np.random.default_rng(0)  # stands in for tfds.load(name='mnist'): no downloads in tests
        images = rng.integers(0, 256, size=(1024, 28, 28, 1), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(1024,), dtype=np.int64)
        return tf.data.Dataset.from_tensor_slices((images, labels)).map(scale).cache().shuffle(BUFFER_SIZE)

    def build_and_compile_cnn_model() -> Any:
        model = tf.keras.Sequential(
            [
                tf.keras.layers.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
                tf.keras.layers.MaxPooling2D(),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(64, activation="relu"),
                tf.keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            loss=tf.keras.losses.sparse_categorical_crossentropy,
            optimizer=tf.keras.optimizers.SGD(learning_rate=0.001),
            metrics=["accuracy"],
        )
        return model

    GLOBAL_BATCH_SIZE = BATCH_SIZE * 8
    train_datasets = make_datasets_unbatched().batch(GLOBAL_BATCH_SIZE).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_datasets = train_datasets.with_options(options)
    multi_worker_model = build_and_compile_cnn_model()
    multi_worker_model.fit(x=train_datasets, epochs=3, steps_per_epoch=5)
    return tf.config.experimental.list_physical_devices("GPU")


@pytest.mark.slow
def test_the_drop_in_runs_the_seeds_readme_example(spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # use_gpu=False: this machine has no GPU; the README's `MirroredStrategyRunner(num_slots=4)` assumes some.
    gpus = MirroredStrategyRunner(num_slots=2, use_gpu=False).run(seed_readme_train)
    assert gpus == []  # the chief's own return value, as in the original
    out = capsys.readouterr().out
    for rank in (0, 1):
        assert f"[worker {rank}] Epoch 3/3" in out
    assert "Shape mismatch" not in out


STANDALONE_DRIVER = """
import json, os, sys
import sparktf
from sparktf.config import SparkConfig
from sparktf.distributed import SparkRunner
from sparktf.distributed.selftest import train_tiny
from sparktf.spark import get_spark

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else json.loads(os.environ["DRIVER_ARGS"])
spark = get_spark(
    SparkConfig(master=os.environ["STANDALONE_MASTER"], ui=False, log_level="ERROR", driver_memory="1g",
                conf=args["conf"]),
    testing=True,
)
result = SparkRunner(spark).run(train_tiny, num_workers=2, run_dir=args["run_dir"], kwargs={"epochs": args["epochs"]})
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
print("RESULT " + json.dumps({"loss": result.history["loss"], "executors": executors,
                              "master": spark.sparkContext.master}))
"""


@pytest.mark.slow
def test_two_workers_on_a_standalone_cluster_train_to_the_same_loss(
    standalone_cluster: Any, one_worker: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = {"conf": standalone_cluster.spark_conf, "run_dir": str(tmp_path), "epochs": EPOCHS}
    monkeypatch.setenv("DRIVER_ARGS", json.dumps(args))
    out = standalone_cluster.python(STANDALONE_DRIVER, timeout=600)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-5000:]}\n{standalone_cluster.logs()}"
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    got = json.loads(line.removeprefix("RESULT "))
    assert got["master"] == standalone_cluster.master_url
    assert got["executors"] == 2  # one 1-core executor per worker: the two TF workers ran on both
    assert got["loss"] == pytest.approx(one_worker.history["loss"], rel=LOSS_TOLERANCE)
    assert "[worker 1] Epoch 1/3" in out.stdout
    assert os.path.exists(tmp_path / "model" / "saved_model" / "saved_model.pb")
