"""What each training worker runs: read TFRecords, build, fit, export (chief).

:func:`train_worker` is the ``train_fn`` the Spark launcher ships to every barrier
task (and that local mode calls in-process). It is a plain function of a frozen,
picklable :class:`TrainSpec`, so the same code runs with 1 or N workers. Every
worker installs the same callbacks (early stopping, the platform's checkpoint and
backup callbacks, the chief-only MLflow callback): symmetric callbacks are what
keeps MultiWorkerMirroredStrategy from deadlocking. The model is built (every
variable created) inside the strategy's scope before ``fit``, so a relaunched
attempt restores the backup into existing variables; tf-keras would otherwise
restore an unbuilt model lazily, inside the first training step, and fail there.
After ``fit`` the chief copies the weights into a fresh, strategy-free model and
exports it, so the export runs no collective op that the other workers would have
to join.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sparktf.data.schema import MODEL_COLUMNS
from sparktf.models.base import ModelParams

__all__ = ["TrainSpec", "read_examples", "train_worker"]


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training run needs, picklable and small.

    Attributes:
        features_dir: the features stage's output (catalogue and vocabularies).
        train_path, validation_path: TFRecord directories of the two splits.
        run_dir: this training run's directory (checkpoints, backups, history); a new
            run needs a new one, or it would resume from the previous run's backup.
        export_base: the model's TF Serving base path; the export goes to
            ``<export_base>/<export_version>``.
        global_batch_size: examples per step over all workers.
        export: False trains and reports without exporting (no ``export_path``
            in the summary): a tuning trial, or a check of training itself.
        steps_per_epoch: None = one pass over the data per epoch; a number makes
            the training data repeat, so every epoch has exactly that many steps.
            Step-based backups (the launcher's ``backup_every_steps``) need a known
            epoch length: with None they use ``ceil(train_examples / global_batch_size)``.
    """

    params: ModelParams
    features_dir: str
    train_path: str
    validation_path: str
    run_dir: str
    export_base: str
    export_version: int = 1
    global_batch_size: int = 512
    epochs: int = 10
    learning_rate: float = 0.005
    lr_decay: float = 0.9
    weight_decay: float = 0.0
    calibrate_taste: bool = False
    early_stopping_patience: int = 2
    steps_per_epoch: int | None = None
    train_examples: int = 0
    top_k: int = 100
    tracking_uri: str = ""
    run_id: str = ""
    metric_prefix: str = ""
    shuffle_buffer: int = 20_000
    export: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def read_examples(
    path: str, batch_size: int, *, shuffle: bool, seed: int, buffer: int = 20_000, windows_only: bool = False
) -> Any:
    """A batched ``tf.data.Dataset`` of example dicts from the TFRecords at ``path``.

    The feature description comes from the Spark schema the TFRecord stage saved
    beside the splits (``<tfrecords>/schema.json``). Records are parsed in large
    batches (fast), then, for training, shuffled across files and re-batched.
    Sharding across workers is by data, so any number of files works. With
    ``windows_only`` only the rows marked ``window_end`` are kept (a model that learns
    from every position of a window: models/factory.py ``trains_on_windows``).
    """
    from sparktf.tfenv import import_tensorflow
    from sparktf.tfrecord.dataset import tfrecord_dataset

    tf = import_tensorflow()
    schema = os.path.join(os.path.dirname(path.rstrip("/")), "schema.json")
    ds = tfrecord_dataset(
        path,
        schema,
        batch_size=max(batch_size, 1024),
        # window_end only where it is used: TFRecords written before it existed still train the others.
        columns=[c for c in MODEL_COLUMNS if windows_only or c != "window_end"],
        shuffle_files=shuffle,
        seed=seed,
        auto_shard_policy="DATA",
    )
    ds = ds.unbatch()
    if windows_only:
        # Cached: the windows are a few percent of the rows (2,412 of 97,171 on ML-100K with
        # max_history 50), and re-reading every record each epoch to keep them took most of an epoch.
        ds = ds.filter(lambda ex: tf.reduce_any(tf.cast(tf.reshape(ex["window_end"], [-1]), tf.int64) > 0)).cache()
    if shuffle:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    else:
        ds = ds.batch(batch_size)
    return ds


def train_worker(spec: TrainSpec, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train on this worker; on the chief, export. Returns a small JSON-able summary.

    Args:
        spec: the run.
        callbacks: extra Keras callbacks, run before the platform's own. They must be
            the same on every worker (symmetric), like the platform's.
    """
    import numpy as np

    from sparktf.distributed.checkpoints import platform_callbacks
    from sparktf.distributed.ranks import is_chief, num_workers, run_context
    from sparktf.models.base import make_optimizer
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model
    from sparktf.models.factory import build_model, trains_on_windows
    from sparktf.tfenv import import_tensorflow
    from sparktf.training.tracking import ChiefMetricsCallback

    tf = import_tensorflow()
    tf.keras.utils.set_random_seed(spec.params.seed)
    workers = max(1, num_workers())
    # This function builds its own strategy (the launcher runs it with strategy="custom"):
    # the chief's export below must happen outside the strategy's scope, or creating
    # the export model's variables would wait for the other workers in a collective.
    if workers > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()  # one worker, several GPUs
    else:
        strategy = tf.distribute.get_strategy()
    catalog = Catalog.from_features(spec.features_dir)

    ctx = run_context()
    steps_per_epoch, backup_every = _epoch_steps(spec, ctx.backup_every_steps if ctx else 0)
    train_ds = read_examples(
        spec.train_path,
        spec.global_batch_size,
        shuffle=True,
        seed=spec.params.seed,
        buffer=spec.shuffle_buffer,
        windows_only=trains_on_windows(spec.params.kind),
    )
    if steps_per_epoch is not None:
        # A fixed epoch length: the data repeat, so no epoch (nor a resumed one) runs short.
        train_ds = train_ds.repeat()
    val_ds = read_examples(spec.validation_path, spec.global_batch_size, shuffle=False, seed=spec.params.seed)
    steps = steps_per_epoch or max(1, spec.train_examples // spec.global_batch_size)

    with strategy.scope():
        model = build_model(catalog, spec.params)
        # Every variable exists before fit (see the module docstring): BackupAndRestore
        # then restores a relaunched attempt's backup into them, and builds the optimizer.
        model.ensure_built()
        optimizer = make_optimizer(spec.learning_rate, spec.lr_decay, steps, weight_decay=spec.weight_decay)
        model.compile(optimizer=optimizer)

    fit_callbacks = [
        *callbacks,
        # Both models report the full-catalogue HR@10 on validation: what evaluation
        # measures, unlike the two-tower's in-batch loss.
        tf.keras.callbacks.EarlyStopping(
            monitor="val_hr_at_10", mode="max", patience=spec.early_stopping_patience, restore_best_weights=True
        ),
        *platform_callbacks(spec.run_dir, backup_every_steps=backup_every),
    ]
    if spec.tracking_uri and spec.run_id:
        fit_callbacks.append(ChiefMetricsCallback(spec.tracking_uri, spec.run_id, prefix=spec.metric_prefix))
    t0 = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=spec.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=fit_callbacks,
        verbose=2 if is_chief() else 0,
    )
    seconds = time.perf_counter() - t0
    hist = {k: [float(x) for x in v] for k, v in history.history.items()}
    # A resumed attempt's History starts at the restored epoch; its epoch numbers do not.
    epochs_run = history.epoch[-1] + 1 if history.epoch else 0
    summary: dict[str, Any] = {
        "history": hist,
        "epochs_run": epochs_run,
        "train_seconds": seconds,
        "workers": workers,
        "examples_per_second": (spec.train_examples * len(history.epoch) / seconds) if seconds > 0 else 0.0,
    }
    # Every worker reads the weights: the model's metric variables are sync-on-read,
    # so reading them is an all-reduce that the chief cannot do alone.
    weights = model.get_weights()
    if not is_chief():
        return summary

    calibration: dict[str, float] = {}
    if spec.export:
        # The export happens outside the strategy: a plain model with the trained weights.
        plain = build_model(catalog, spec.params)
        plain.ensure_built()
        plain.set_weights(weights)
        if spec.calibrate_taste and getattr(plain, "repeat", None) is not None:
            # On the weights as trained (and restored by early stopping), before the export
            # takes them: models/sequential.py, "The taste weight". Only a model with a
            # repeat term has the two parts to weigh (not the two-tower).
            val = read_examples(spec.validation_path, spec.global_batch_size, shuffle=False, seed=spec.params.seed)
            weight, scores = plain.calibrate_taste(val)
            calibration = {"taste_weight": weight, "calibrated_val_ndcg_at_10": scores[weight]}
            curve = ", ".join(f"{w:g}: {v:.4f}" for w, v in scores.items())
            print(f"sparktf: taste weight {weight:g}; validation NDCG@10 by weight {curve}", flush=True)
            summary["taste_calibration"] = {str(w): v for w, v in scores.items()}
        summary["export_path"] = export_model(
            plain,
            spec.export_base,
            spec.export_version,
            k=spec.top_k,
            extra={"spec": _jsonable(asdict(spec)), "history": hist},
        )
    summary["final_metrics"] = {k: v[-1] for k, v in hist.items() if v}
    summary["final_metrics"].update(calibration)
    best = min(hist.get("val_loss", [float("inf")]))
    summary["best_val_loss"] = best if np.isfinite(best) else None
    with open(os.path.join(spec.run_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(_jsonable(summary), fh, indent=2)
    return summary


def _epoch_steps(spec: TrainSpec, backup_every_steps: int) -> tuple[int | None, int]:
    """``(steps_per_epoch for fit, backup_every_steps for the callbacks)``.

    tf-keras resumes a step-based backup at ``(epoch, step)``, which needs the epoch's
    length: without it (``steps_per_epoch=None`` on data of unknown size) a relaunched
    attempt fails at once. So step-based backups get an epoch of
    ``ceil(train_examples / global_batch_size)`` steps, one pass over the data, and with
    no example count either the backups fall back to every epoch.
    """
    if spec.steps_per_epoch is not None or backup_every_steps <= 0:
        return spec.steps_per_epoch, backup_every_steps
    if spec.train_examples > 0:
        return max(1, math.ceil(spec.train_examples / spec.global_batch_size)), backup_every_steps
    print(
        f"sparktf: backup_every_steps={backup_every_steps} needs a known epoch length, but the TrainSpec "
        "has neither steps_per_epoch nor train_examples; backing up at the end of every epoch instead.",
        file=sys.stderr,
    )
    return None, 0


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
