"""Recovery of the real training function from a lost worker, for both models.

:func:`~sparktf.training.train_fn.train_worker` trains the sequential and the
two-tower model on two TF workers (``local[2]``) from small TFRecords written by
Spark's ``tfrecord`` data source. In the first attempt one worker SIGKILLs itself right
after a given global step, once a backup exists; the launcher relaunches both
workers, which restore the chief's backup and finish. Every worker logs each
step it ran (and a checksum of the trainable weights), so the tests count the
steps of each attempt: the relaunched attempt starts right after the last
backup, so at most one backup interval of steps is run twice, and it starts
from the backed-up weights, not from fresh ones.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark import cloudpickle

from sparktf.distributed import SparkRunner

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = [pytest.mark.spark, pytest.mark.slow]

V, USERS, LENGTH = 40, 70, 12  # 70 users x 11 examples = 770 train examples
BATCH, STEPS_PER_EPOCH, EPOCHS, BACKUP_EVERY = 32, 8, 2, 3
IDEAL = STEPS_PER_EPOCH * EPOCHS

EXAMPLES_DDL = (
    "user_id string, history array<string>, history_len int, target string, target_category string, "
    "target_brand string, target_price_bucket int, split string"
)


@pytest.fixture(scope="module")
def data(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A features directory (vocabularies, items) and TFRecords of two splits, written with Spark."""
    from sparktf.tfrecord.api import write_tfrecord

    workdir = tmp_path_factory.mktemp("recovery-work")
    items = [f"i{i}" for i in range(V)]
    succ = np.random.default_rng(0).integers(0, V, size=V)
    rng = np.random.default_rng(1)
    rows = []
    for u in range(USERS + 10):
        split = "train" if u < USERS else "validation"
        s = [int(rng.integers(V))]
        for _ in range(LENGTH - 1):
            s.append(int(succ[s[-1]]) if rng.random() < 0.7 else int(rng.integers(V)))
        for t in range(1, LENGTH):
            hist = [items[x] for x in s[max(0, t - 5) : t]]
            x = s[t]
            rows.append((f"u{u}", hist, len(hist), items[x], f"c{x % 3}", f"b{x % 4}", x % 3, split))
    features = workdir / "features"
    spark.createDataFrame(
        [(items[i], i + 1, 100 - i) for i in range(V)], "item_id string, index int, count long"
    ).write.parquet(str(features / "vocab" / "items"))
    spark.createDataFrame([(f"u{u}", u + 1) for u in range(USERS)], "user_id string, index int").write.parquet(
        str(features / "vocab" / "users")
    )
    spark.createDataFrame(
        [(items[i], f"c{i % 3}", f"b{i % 4}", i % 3) for i in range(V)],
        "item_id string, category string, brand string, price_bucket int",
    ).write.parquet(str(features / "items"))
    examples = spark.createDataFrame(rows, EXAMPLES_DDL)
    for split in ("train", "validation"):
        part = examples.where(f"split = '{split}'").drop("split").repartition(2)
        write_tfrecord(part, str(workdir / "tfrecords" / split))
    (workdir / "tfrecords" / "schema.json").write_text(examples.drop("split").schema.json())
    assert examples.where("split = 'train'").count() == USERS * (LENGTH - 1)
    return {"features": str(features), "tfrecords": str(workdir / "tfrecords")}


def train_and_log_steps(spec: Any, *, log_dir: str, kills: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """``train_worker`` plus a step log. ``kills[attempt] = (rank, global_step)``: in that
    attempt, that worker SIGKILLs itself right after that step (before the step's backup)."""
    import signal

    from sparktf.distributed.ranks import run_context, worker_index
    from sparktf.tfenv import import_tensorflow
    from sparktf.training.train_fn import train_worker

    tf: Any = import_tensorflow()
    ctx = run_context()
    rank, attempt = worker_index(), ctx.attempt if ctx else 1
    path = os.path.join(log_dir, f"steps-attempt{attempt}-rank{rank}.txt")

    class StepLog(tf.keras.callbacks.Callback):
        """``begin|end <global step> <sum of |trainable weights|>`` for every training step."""

        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def _write(self, event: str, batch: int) -> int:
            step = self.epoch * STEPS_PER_EPOCH + batch + 1
            # Mirrored variables: each worker reads its own copy, no collective.
            total = sum(float(tf.reduce_sum(tf.abs(v))) for v in self.model.trainable_variables)
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{event} {step} {total!r}\n")
            return step

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self._write("begin", batch)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            step = self._write("end", batch)
            if kills.get(attempt) == (rank, step):
                os.kill(os.getpid(), signal.SIGKILL)

    return train_worker(spec, callbacks=[StepLog()])


def _steps(log_dir: Path, attempt: int, rank: int, event: str = "end") -> list[tuple[int, float]]:
    path = log_dir / f"steps-attempt{attempt}-rank{rank}.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        e, step, total = line.split()
        if e == event:
            out.append((int(step), float(total)))
    return out


# Backups every 3 steps, counted from each attempt's first step; a kill comes before its step's backup.
CASES = [
    pytest.param(
        "sequential",
        {1: (1, 5), 2: (0, 12)},
        # attempt 1: backup after 3, worker 1 lost after 5; attempt 2 resumes at 4: backups after 6
        # and 9, the chief lost after 12 (its backup never written); attempt 3 resumes at 10.
        [range(1, 6), range(4, 13), range(10, 17)],
        [3, 9],
        True,
        id="sequential-worker1-then-chief",
    ),
    pytest.param(
        "two_tower",
        {1: (1, 11)},
        # backups after 3, 6 and 9; worker 1 lost after 11, in epoch 2; attempt 2 resumes at 10.
        [range(1, 12), range(10, 17)],
        [9],
        False,  # no export: the sequential case checks that the relaunched chief exports
        id="two_tower-worker1-epoch2",
    ),
]


@pytest.mark.parametrize(("kind", "kills", "expected", "backups", "export"), CASES)
def test_lost_workers_resume_from_the_last_backup(
    spark: Any,
    data: dict[str, str],
    tmp_path: Path,
    kind: str,
    kills: dict[int, tuple[int, int]],
    expected: list[range],
    backups: list[int],
    export: bool,
) -> None:
    from sparktf.models.base import ModelParams
    from sparktf.training.train_fn import TrainSpec

    params = ModelParams(kind=kind, embedding_dim=8, max_history=5, dropout=0.0, seed=3)  # type: ignore[arg-type]
    spec = TrainSpec(
        params=params,
        features_dir=data["features"],
        train_path=f"{data['tfrecords']}/train",
        validation_path=f"{data['tfrecords']}/validation",
        run_dir=str(tmp_path / "run"),
        export_base=str(tmp_path / "export"),
        global_batch_size=BATCH,
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        train_examples=USERS * (LENGTH - 1),
        shuffle_buffer=1000,
        top_k=5,
        export=export,
    )
    logs = tmp_path / "steps"
    logs.mkdir()
    lines: list[str] = []
    t0 = time.monotonic()
    result = SparkRunner(spark, log_sink=lines.append).run(
        train_and_log_steps,
        spec,
        num_workers=2,
        strategy="custom",
        max_restarts=len(kills),
        run_dir=spec.run_dir,
        backup_every_steps=BACKUP_EVERY,
        kwargs={"log_dir": str(logs), "kills": kills},
    )
    seconds = time.monotonic() - t0
    failures = tuple(f"attempt {a}: worker {r} (127.0.0.1) died: killed by SIGKILL" for a, (r, _) in kills.items())
    assert (result.attempts, result.failures) == (len(kills) + 1, failures), "\n".join(lines[-80:])

    # Every worker ran exactly the expected steps in each attempt: each relaunch resumed right
    # after the last backup, so only the steps since that backup ran twice.
    for attempt, steps in enumerate(expected, start=1):
        for r in (0, 1):
            assert [s for s, _ in _steps(logs, attempt, r)] == list(steps), (attempt, r)
    ran = sum(len(steps) for steps in expected)
    repeated = [kill - backup for (_, kill), backup in zip(kills.values(), backups, strict=True)]
    assert ran - IDEAL == sum(repeated)
    assert all(0 < n <= BACKUP_EVERY for n in repeated), repeated

    # Each relaunch started from the backed-up weights (the chief's after the backup's step,
    # in the attempt that wrote it), not from a fresh initialisation like attempt 1's.
    fresh = _steps(logs, 1, 0, "begin")[0][1]
    for attempt, backup in enumerate(backups, start=2):
        writer = max(a for a in range(1, attempt) if backup in expected[a - 1])
        backed_up = dict(_steps(logs, writer, 0))[backup]
        resumed = _steps(logs, attempt, 0, "begin")[0][1]
        assert resumed == pytest.approx(backed_up, rel=1e-6), attempt
        assert resumed != pytest.approx(fresh, rel=1e-3), attempt

    # Both epochs are in the history, whichever attempt ran them.
    assert len(result.history["loss"]) == EPOCHS
    assert all(np.isfinite(result.history["loss"]))
    summary = result.value
    assert summary["epochs_run"] == EPOCHS
    if export:
        assert os.path.exists(os.path.join(summary["export_path"], "saved_model.pb"))
    else:
        assert "export_path" not in summary and not os.path.exists(spec.export_base)
    assert not os.path.exists(os.path.join(spec.run_dir, "backup"))  # removed once the run succeeded
    assert not [ln for ln in lines if "must be built before you call `fit()`" in ln]
    print(f"{kind}: {ran} steps for {IDEAL} ({ran - IDEAL} repeated: {repeated}), {seconds:.1f}s")


def train_sequential_in_process(*, catalog_ids: list[str], dim: int, build: bool, crash: bool) -> dict[str, Any]:
    """The sequential model on a few in-memory examples with the platform's callbacks (backups
    every 2 steps); ``build``: built before ``fit`` as train_worker does; ``crash``: raise after
    step 5 (of 2 epochs x 4 steps), once the backup of step 4 exists."""
    from sparktf.distributed.checkpoints import callbacks
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.catalog import Catalog
    from sparktf.models.factory import build_model
    from sparktf.tfenv import import_tensorflow

    tf: Any = import_tensorflow()
    model = build_model(Catalog.from_arrays(catalog_ids), ModelParams(embedding_dim=dim, max_history=3, dropout=0.0))
    if build:
        model.ensure_built()
    model.compile(optimizer=make_optimizer(0.01, 0.9, 4))
    n = len(catalog_ids)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "user_id": tf.constant(["u"] * 32),
            "history": tf.constant([[catalog_ids[i % n], catalog_ids[(i + 1) % n]] for i in range(32)]),
            "target": tf.constant([catalog_ids[(i + 2) % n] for i in range(32)]),
        }
    )

    class Crash(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if crash and self.epoch * 4 + batch + 1 == 5:
                raise RuntimeError("crashed after step 5, leaving the backup of step 4 behind")

    history = model.fit(
        ds.batch(8).repeat(),
        epochs=2,
        steps_per_epoch=4,
        verbose=0,
        callbacks=[Crash(), *callbacks(backup_every_steps=2)],
    )
    return {"epochs": list(history.epoch)}


def test_a_backup_that_cannot_be_restored_is_reported_as_a_restore_failure(tmp_path: Path) -> None:
    # In this process (local mode). A run with 4-dimensional embeddings leaves a backup; runs
    # with 8 dimensions cannot restore it. Built before fit, the restore fails when training
    # begins; unbuilt, tf-keras restores lazily and the error comes from inside the first step
    # (under MultiWorkerMirroredStrategy that is "You must feed a value for placeholder tensor"
    # even with matching shapes: the defect). Either way the error is a BackupRestoreError that
    # names the backup and what to do, which the launcher relaunches instead of calling it a bug.
    from sparktf.distributed.checkpoints import BackupRestoreError
    from sparktf.distributed.result import WorkerFailure, should_restart, summarize_error
    from sparktf.errors import TrainingFailedError

    run_dir = str(tmp_path / "run")
    items = [f"i{i}" for i in range(10)]

    def run(**kwargs: Any) -> Any:
        return SparkRunner(log_sink=lambda _: None).run(
            train_sequential_in_process, num_workers=0, run_dir=run_dir, kwargs={"catalog_ids": items, **kwargs}
        )

    with pytest.raises(TrainingFailedError, match="RuntimeError: crashed after step 5"):
        run(dim=4, build=True, crash=True)
    backup = os.path.join(run_dir, "backup")
    assert os.path.isdir(os.path.join(backup, "chief"))

    for build, diagnosis, advice in [
        (True, "; ", "resume it with the code and model settings that wrote it"),
        (False, " (the model was not built before fit()", "inside strategy.scope()"),
    ]:
        with pytest.raises(BackupRestoreError) as err:  # the local mode raises the platform's errors as they are
            run(dim=8, build=build, crash=False)
        text = str(err.value)
        assert text.startswith(f"Could not restore the backup in {backup}{diagnosis}"), text
        assert f"{advice}, or delete {backup} to start the run over." in text
        assert "The error: ValueError: " in text and "shape" in text.lower()  # the cause, in TensorFlow's words
        assert err.value.context["backup_dir"] == backup
        # On Spark, the worker's report of it is relaunched, not failed as a bug of train_fn.
        assert should_restart(WorkerFailure(0, "h", 2, "raised", summarize_error("BackupRestoreError", text)))

    # The backup is intact: the model that wrote it restores it. A failure once a step has run
    # since the restore (the crash after step 5, the first step resumed) is train_fn's own again.
    with pytest.raises(TrainingFailedError, match="RuntimeError: crashed after step 5"):
        run(dim=4, build=True, crash=True)
    # And without it the run finishes: the rest of epoch 2.
    result = run(dim=4, build=True, crash=False)
    assert result.value["epochs"] == [1]
    assert not os.path.exists(backup)
