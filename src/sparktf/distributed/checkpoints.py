"""Checkpointing that cannot deadlock: the same callbacks on every worker.

Under MultiWorkerMirroredStrategy, saving reads variables through all-reduce,
so every worker must save at the same moments. The classic mistake, a
``ModelCheckpoint`` added on the chief only, makes the chief's save collective
meet the others' next gradient all-reduce and crash with "Shape mismatch in the
collective instance" (or hang). :func:`callbacks` returns the same list on every
worker; only the paths differ:

* the chief writes to the persistent run directory
  (``<run_dir>/backup``, ``<run_dir>/checkpoints``, ``<run_dir>/history``);
* other workers write their throw-away copies to their own local scratch
  directory, so the shared storage sees one copy, not N;
* on (re)start every worker restores the **chief's** backup, so all of them
  agree on the epoch and step to resume from (two workers restoring different
  backups disagree on ``initial_epoch`` and the job dies).

:func:`save_model` follows the same rule for the final model. We wrap tf-keras's
``BackupAndRestore`` and ``ModelCheckpoint`` rather than write our own because
their resume logic (epoch and step counters inside the checkpoint) is what
``fit`` reads; we only move the non-chief writes and add the history file.

Usage inside a ``train_fn``:

    model.fit(dataset, epochs=5, steps_per_epoch=100,
              callbacks=sparktf.distributed.callbacks())
"""

from __future__ import annotations

import posixpath
import sys
import tempfile
from typing import Any

from sparktf.distributed.ranks import RunContext, is_chief, run_context, worker_index
from sparktf.errors import LauncherError

__all__ = [
    "BackupRestoreError",
    "backup_dir",
    "callbacks",
    "checkpoint_dir",
    "history_path",
    "model_dir",
    "platform_callbacks",
    "remove_backup",
    "restore_failure",
    "save_model",
]


class BackupRestoreError(LauncherError):
    """A relaunched (or resumed) run could not restore its backup.

    Not a bug of ``train_fn``'s training code, and not a lost worker: the backup is
    there, but this code cannot read it back into its model. The message names the
    backup directory and what to do; the launcher's classification
    (:func:`~sparktf.distributed.result.is_restore_failure`) keys on the type name.
    """

    headline = "Backup restore error"


def _join(root: str, *parts: str) -> str:
    # posixpath, not os.path: run directories may be URIs (hdfs://, s3a://, gs://).
    return posixpath.join(root.rstrip("/"), *parts)


def backup_dir(run_dir: str) -> str:
    """Where the chief keeps the BackupAndRestore state of a run."""
    return _join(run_dir, "backup")


def checkpoint_dir(run_dir: str) -> str:
    """Where the chief keeps per-epoch weights."""
    return _join(run_dir, "checkpoints")


def model_dir(run_dir: str) -> str:
    """Where the chief saves the final model (``saved_model/`` and ``weights/``)."""
    return _join(run_dir, "model")


def history_path(run_dir: str, run_id: str, attempt: int) -> str:
    """The chief's per-epoch log of one attempt of one run."""
    return _join(run_dir, "history", run_id or "local", f"attempt-{attempt}.json")


def _context(run_dir: str | None, what: str) -> RunContext:
    ctx = run_context()
    if run_dir is None:
        if ctx is None:
            raise LauncherError(
                f"{what} needs a run directory: none was given and this process was not started by "
                "sparktf.distributed.SparkRunner.",
                hint=f"Call {what}(run_dir=...) with a directory every worker can reach, "
                "or run train_fn through SparkRunner / MirroredStrategyRunner.",
            )
        return ctx
    if ctx is not None and ctx.run_dir == run_dir:
        return ctx
    return RunContext(
        run_dir=run_dir,
        run_id=ctx.run_id if ctx else "",
        attempt=ctx.attempt if ctx else 1,
        rank=worker_index(),
        num_workers=ctx.num_workers if ctx else 1,
        scratch_dir=ctx.scratch_dir if ctx else "",
        backup_every_steps=ctx.backup_every_steps if ctx else 0,
    )


def _scratch(ctx: RunContext) -> str:
    return ctx.scratch_dir or tempfile.mkdtemp(prefix=f"sparktf-scratch-{ctx.rank}-")


def callbacks(
    run_dir: str | None = None,
    *,
    backup_every_steps: int | None = None,
    checkpoint_every_epoch: bool = True,
) -> list[Any]:
    """The platform's Keras callbacks, identical on every worker.

    Args:
        run_dir: the persistent run directory; defaults to the launcher's.
        backup_every_steps: back up the training state every this many steps
            (at most this many minus one steps are repeated after a lost
            worker); 0 backs up at the end of each epoch. Defaults to the
            run's ``train.backup_every_steps``.
        checkpoint_every_epoch: also keep the weights of every epoch under
            ``<run_dir>/checkpoints/`` (chief only).

    Returns:
        ``[BackupAndRestore, EpochHistory, ModelCheckpoint]``, to pass to ``fit``
        after any callbacks of your own. Do not make the list depend on
        :func:`~sparktf.distributed.is_chief`.

    Raises:
        LauncherError: no run directory is known, or a negative frequency.
    """
    ctx = _context(run_dir, "callbacks")
    every = ctx.backup_every_steps if backup_every_steps is None else backup_every_steps
    if every < 0:
        raise LauncherError(
            f"backup_every_steps = {every} is not allowed; expected 0 (every epoch) or a positive step count.",
        )
    from sparktf.distributed._keras import ChiefBackupAndRestore, EpochHistory, tf

    chief = is_chief()
    scratch = _scratch(ctx)
    out: list[Any] = [
        ChiefBackupAndRestore(backup_dir(ctx.run_dir), scratch_dir=scratch, save_freq=every or "epoch"),
        EpochHistory(history_path(ctx.run_dir, ctx.run_id, ctx.attempt), is_chief=chief),
    ]
    if checkpoint_every_epoch:
        root = checkpoint_dir(ctx.run_dir) if chief else _join(scratch, "checkpoints")
        out.append(
            tf.keras.callbacks.ModelCheckpoint(
                filepath=_join(root, "weights-epoch{epoch:03d}"), save_weights_only=True, verbose=0
            )
        )
    return out


# The name the issue and the train stage use; the same function.
platform_callbacks = callbacks


def save_model(model: Any, run_dir: str | None = None) -> tuple[str, str]:
    """Save ``model`` as a SavedModel and as weights; call it on **every** worker.

    The chief writes ``<run_dir>/model/saved_model`` and ``<run_dir>/model/weights/weights``;
    other workers write the same to their scratch directory and delete it, because
    the save itself is a collective operation that all workers must join.

    Returns:
        ``(saved_model_path, weights_path)`` of the chief's copy, on every worker.
    """
    ctx = _context(run_dir, "save_model")
    from sparktf.distributed._keras import tf

    final = model_dir(ctx.run_dir)
    root = final if is_chief() else _join(_scratch(ctx), "model")
    model.save(_join(root, "saved_model"), save_format="tf")
    model.save_weights(_join(root, "weights", "weights"))
    if root != final and tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)
    return _join(final, "saved_model"), _join(final, "weights", "weights")


def restore_failure(exc: BaseException) -> BackupRestoreError | None:
    """The :class:`BackupRestoreError` that ``exc`` really is, else ``None``.

    tf-keras restores a backup when training begins, but the variables an unbuilt
    model creates later, inside the first traced training step, are restored only
    then, and fail there ("You must feed a value for placeholder tensor ..."), far
    from anything that says "backup". So an exception that escapes ``fit`` after the
    platform's callback restored a backup and before the first step finished is
    reported as the restore failure it is. ``None`` when no backup was being
    restored, or when ``exc`` already is one.
    """
    if isinstance(exc, BackupRestoreError):
        return None
    keras_side = sys.modules.get("sparktf.distributed._keras")
    pending = getattr(keras_side, "pending_restore", None)
    state = pending() if pending is not None else None
    if state is None:
        return None
    path, built = state
    return restore_error(path, describe_cause(exc), built=built)


def describe_cause(exc: BaseException, limit: int = 240) -> str:
    """One line for the error behind a failed restore.

    An error raised while a ``tf.function`` is traced reads "in user code:", then the
    traced frames, and only then the error itself, on the last line.
    """
    from sparktf.distributed.result import summarize_error

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("in user code"):
        last = lines[-1]
        return last if len(last) <= limit else last[: limit - 3] + "..."
    return summarize_error(type(exc).__name__, str(exc), limit=limit)


def forget_restore() -> None:
    """Drop this process's record of a restore in progress (a new ``train_fn`` call starts)."""
    reset = getattr(sys.modules.get("sparktf.distributed._keras"), "forget_pending", None)
    if reset is not None:
        reset()


def restore_error(path: str, cause: str, *, built: bool) -> BackupRestoreError:
    """The error for a backup at ``path`` that could not be restored because of ``cause``."""
    if built:
        why = ""
        fix = "resume it with the code and model settings that wrote it"
    else:
        why = (
            " (the model was not built before fit(), so tf-keras restored its variables lazily, "
            "inside the first training step)"
        )
        fix = "build the model before fit(): call it on one batch, or model.build(...), inside strategy.scope()"
    return BackupRestoreError(
        # What to do comes before the cause: a report's headline may cut a long line short.
        f"Could not restore the backup in {path}{why}; {fix}, or delete {path} to start the run over. "
        f"The error: {cause}",
        backup_dir=path,
        cause=cause,
        model_built=built,
    )


def remove_backup(run_dir: str) -> None:
    """Delete a finished run's backup so that a new run in the same directory starts fresh."""
    from sparktf.distributed._keras import tf

    path = backup_dir(run_dir)
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
