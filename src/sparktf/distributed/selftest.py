"""A tiny deterministic training job for checking the launcher on a cluster.

The integration tests and ``bench/bench_launcher.py`` run :func:`train_tiny`
through :class:`~sparktf.distributed.SparkRunner`, and a user can do the same
on their own cluster to check it end to end in seconds. It lives in the package
(not in ``tests/``) because the function must be importable by name on the
executors, as accelerate ships its test scripts inside the library.

The data are a fixed synthetic regression, batched so that every epoch sees
the same global batches in the same order; the weights start from a fixed
seed. One worker and N workers therefore follow the same trajectory (the
global batch is split across workers and the gradients summed), which is what
"N workers train to the same loss as one" checks.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from sparktf.distributed.checkpoints import callbacks as platform_callbacks
from sparktf.distributed.ranks import is_chief, run_context, worker_index

__all__ = ["read_step_log", "synthetic_regression", "train_tiny"]


def synthetic_regression(num_examples: int = 256, num_features: int = 8, seed: int = 0) -> tuple[Any, Any]:
    """``(x, y)`` float32 arrays of shape ``[num_examples, num_features]`` and ``[num_examples, 1]``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, num_features)).astype("float32")
    w = rng.normal(size=(num_features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(num_examples, 1))).astype("float32")
    return x, y


def _step_logger(tf: Any, path: str, steps_per_epoch: int) -> Any:
    class StepLog(tf.keras.callbacks.Callback):
        """Appends ``begin|end <global step> <unix time>`` for every batch (1-based global steps)."""

        def __init__(self) -> None:
            super().__init__()
            self._epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch = epoch

        def _write(self, event: str, batch: int) -> None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{event} {self._epoch * steps_per_epoch + batch + 1} {time.time():.6f}\n")

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self._write("begin", batch)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._write("end", batch)

    return StepLog()


def _pauser(tf: Any, pid_path: str, global_step: int, steps_per_epoch: int) -> Any:
    class PauseAt(tf.keras.callbacks.Callback):
        """At ``global_step``, writes this process's pid to ``pid_path`` and waits to be killed."""

        def __init__(self) -> None:
            super().__init__()
            self._epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self._epoch * steps_per_epoch + batch + 1 != global_step:
                return
            tmp = pid_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()} {time.time():.6f}\n")
            os.replace(tmp, pid_path)
            time.sleep(300)

    return PauseAt()


def train_tiny(
    *,
    epochs: int = 3,
    steps_per_epoch: int = 8,
    global_batch_size: int = 32,
    learning_rate: float = 0.05,
    seed: int = 0,
    hidden_units: int = 16,
    use_platform_callbacks: bool = True,
    backup_every_steps: int | None = None,
    checkpoint_every_epoch: bool = False,
    chief_only_checkpoint: bool = False,
    step_log_dir: str | None = None,
    pause_at: tuple[int, int, int] | None = None,
    verbose: int = 2,
) -> Any:
    """Train a 2-layer regression model on synthetic data; returns the Keras model.

    Args:
        epochs, steps_per_epoch, global_batch_size, learning_rate, seed: the job's size.
        hidden_units: width of the hidden layer (the benchmark makes it large enough to compute).
        use_platform_callbacks: pass :func:`sparktf.distributed.callbacks` to ``fit``.
        backup_every_steps: backup frequency for those callbacks (default: the run's).
        checkpoint_every_epoch: have those callbacks keep every epoch's weights (chief only).
        chief_only_checkpoint: add a ``ModelCheckpoint`` on the chief only, the
            classic mistake that crashes MultiWorkerMirroredStrategy (for the demonstration).
        step_log_dir: write ``steps-attempt{A}-rank{R}.txt`` there (see :func:`read_step_log`).
        pause_at: ``(rank, attempt, global_step)``: that worker, in that attempt, writes its pid
            to ``step_log_dir/paused-rank{R}.pid`` after that step and waits to be killed.
        verbose: Keras ``fit`` verbosity (2: one line per epoch).
    """
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    tf.keras.utils.set_random_seed(seed)
    x, y = synthetic_regression(num_examples=steps_per_epoch * global_batch_size, seed=seed)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch_size).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(x.shape[1],)),
            tf.keras.layers.Dense(hidden_units, activation="relu"),
            tf.keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    ctx = run_context()
    rank, attempt = worker_index(), ctx.attempt if ctx else 1
    cbs: list[Any] = []
    if step_log_dir:
        os.makedirs(step_log_dir, exist_ok=True)
        log = os.path.join(step_log_dir, f"steps-attempt{attempt}-rank{rank}.txt")
        cbs.append(_step_logger(tf, log, steps_per_epoch))
        if pause_at is not None and pause_at[:2] == (rank, attempt):
            pid_path = os.path.join(step_log_dir, f"paused-rank{rank}.pid")
            cbs.append(_pauser(tf, pid_path, pause_at[2], steps_per_epoch))
    if use_platform_callbacks:
        cbs.extend(
            platform_callbacks(backup_every_steps=backup_every_steps, checkpoint_every_epoch=checkpoint_every_epoch)
        )
    if chief_only_checkpoint and is_chief():
        where = os.path.join(ctx.run_dir if ctx else ".", "naive-checkpoints", "ckpt-{epoch}")
        cbs.append(tf.keras.callbacks.ModelCheckpoint(where))
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=cbs, verbose=verbose)
    return model


def read_step_log(path: str) -> list[tuple[str, int, float]]:
    """The ``(event, global_step, time)`` records of a step log written by :func:`train_tiny`."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            event, step, t = line.split()
            out.append((event, int(step), float(t)))
    return out
