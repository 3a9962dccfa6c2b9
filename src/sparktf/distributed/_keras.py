"""The Keras callback classes behind :mod:`sparktf.distributed.checkpoints`.

Kept apart because defining them imports TensorFlow; ``checkpoints`` imports
this module only when a callback is actually built, inside a TF worker.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sparktf.tfenv import import_tensorflow

tf: Any = import_tensorflow()

# After a restore: (backup dir, model built?, the model's step counter, its restored value).
_pending: tuple[str, bool, Any, int] | None = None


def pending_restore() -> tuple[str, bool] | None:
    """``(backup_dir, model_was_built)`` when this process restored a backup and has not
    finished a training step since (the model's step counter has not moved); a failure
    now is most likely that restore's."""
    if _pending is None:
        return None
    path, built, counter, restored = _pending
    try:
        steps = int(tf.keras.backend.get_value(counter))
    except Exception:  # noqa: BLE001 - unknown, so not blamed on the restore
        return None
    return (path, built) if steps == restored else None


def forget_pending() -> None:
    global _pending
    _pending = None


class ChiefBackupAndRestore(tf.keras.callbacks.BackupAndRestore):
    """tf-keras's ``BackupAndRestore`` with the non-chief copies on local scratch.

    tf-keras already has every worker *restore* from the chief's backup and has
    non-chief workers *write* a throw-away copy (the write must happen on every
    worker, because saving reads variables through all-reduce). But it puts those
    copies in ``<backup_dir>/workertemp_<rank>``, on the shared storage, so each
    backup costs N full model writes there. This subclass sends them to the
    worker's local scratch directory instead; the chief's writes, the reads and
    the collectives are unchanged.

    It also tells a failed restore from a bug: the restore's own error, or any error
    before the first training step after a restore (when tf-keras restores the
    variables an unbuilt model creates only then), becomes a
    :class:`~sparktf.distributed.checkpoints.BackupRestoreError` naming the backup
    (see :func:`~sparktf.distributed.checkpoints.restore_failure`).
    """

    def __init__(self, backup_dir: str, *, scratch_dir: str, save_freq: int | str) -> None:
        # The backup outlives `fit`: a worker lost after `fit` (while saving the model) must not
        # restart training from scratch. The launcher removes it once every worker has finished.
        super().__init__(backup_dir=backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self._scratch_dir = scratch_dir

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        global _pending
        from sparktf.distributed.checkpoints import describe_cause, restore_error

        # tf-keras reads the chief's copy from "<backup_dir>/chief".
        found = tf.train.latest_checkpoint(os.path.join(self.backup_dir, "chief"))
        built = bool(self.model.built)
        _pending = None
        try:
            super().on_train_begin(logs)  # restores the backup, if any
        except Exception as exc:
            if not found:
                raise
            raise restore_error(self.backup_dir, describe_cause(exc), built=built) from exc
        if found:
            # An unbuilt model's variables are restored only when the first step creates them.
            counter = self.model._train_counter  # restored with the backup; +1 per finished step
            _pending = (self.backup_dir, built, counter, int(tf.keras.backend.get_value(counter)))
        state = self._training_state
        if state.write_checkpoint_manager is state.read_checkpoint_manager or not self._scratch_dir:
            return
        shared_temp = state.write_checkpoint_manager.directory
        strategy = self.model.distribute_strategy
        # Same "workertemp_<id>" leaf tf-keras uses, so its own clean-up after each save removes it.
        local_temp = os.path.join(self._scratch_dir, "backup", f"workertemp_{strategy.extended._task_id}")
        tf.io.gfile.makedirs(local_temp)
        state.write_checkpoint_manager = tf.train.CheckpointManager(
            state.read_checkpoint_manager.checkpoint, directory=local_temp, max_to_keep=1
        )
        # tf-keras created the shared temp dir in its constructor; nothing will ever be written there now.
        if tf.io.gfile.exists(shared_temp):
            tf.io.gfile.rmtree(shared_temp)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        global _pending
        _pending = None
        super().on_train_end(logs)


class EpochHistory(tf.keras.callbacks.Callback):
    """Writes each epoch's logs to ``path`` (chief only), so a restarted run keeps the epochs before the restart.

    Keras's own ``History`` lives in the worker process and dies with it; after a
    restart ``fit`` resumes at the backed-up epoch and its ``History`` starts
    there. The launcher merges these per-attempt files into one history.
    Writing needs no collective (the logs are plain numbers by now), so only the
    chief writes while every worker carries the callback.
    """

    def __init__(self, path: str, *, is_chief: bool) -> None:
        super().__init__()
        self._path = path
        self._is_chief = is_chief
        self._records: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._is_chief:
            return
        clean = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        self._records = [r for r in self._records if r["epoch"] != epoch] + [{"epoch": int(epoch), "logs": clean}]
        tf.io.gfile.makedirs(os.path.dirname(self._path))
        tmp = self._path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(self._records))
        tf.io.gfile.rename(tmp, self._path, overwrite=True)


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
