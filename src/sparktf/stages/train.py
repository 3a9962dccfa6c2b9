"""Stage 5, ``train``: every model of ``train.models`` trained on Spark and logged to MLflow.

For each model kind: open an MLflow run (params and ``config.toml`` with secrets
redacted, the data fingerprint, tags), run
:func:`~sparktf.training.train_fn.train_worker` on ``train.num_workers`` Spark barrier
tasks through :class:`~sparktf.distributed.SparkRunner` (or in this process with 0),
then log the training curves and the export as a logged model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

from sparktf.config import Config, config_to_dict, config_to_toml
from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError, ModelError
from sparktf.stages._common import spark_for
from sparktf.stages.state import TrainedModel, TrainResult

__all__ = ["LaunchArgs", "ProfileArgs", "launch_args", "model_params", "profile_args", "run", "train_spec"]


@dataclass(frozen=True)
class LaunchArgs:
    """The keyword arguments of :meth:`sparktf.distributed.SparkRunner.run` that come from ``[train]``."""

    num_workers: int
    use_gpu: bool
    max_restarts: int
    backup_every_steps: int
    launch_timeout_s: float
    worker_threads: int
    pin_cpus: bool


@dataclass(frozen=True)
class ProfileArgs:
    """The arguments of :mod:`sparktf.monitoring.reference`: the reference profile saved with
    each trained model (issue 19). Seen items are excluded from the top-1 score as the server
    excludes them (``serve.exclude_seen``); popularity buckets are the evaluation's
    (``evaluation.popularity_shares``)."""

    exclude_seen: bool
    popularity_shares: tuple[float, ...]
    score_bins: int
    length_bins: int
    top_categories: int
    batch_size: int


def profile_args(cfg: Config) -> ProfileArgs:
    m = cfg.monitoring
    return ProfileArgs(
        exclude_seen=cfg.serve.exclude_seen,
        popularity_shares=cfg.evaluation.popularity_shares,
        score_bins=m.score_bins,
        length_bins=m.length_bins,
        top_categories=m.top_categories,
        batch_size=cfg.evaluation.batch_size,
    )


def launch_args(cfg: Config) -> LaunchArgs:
    t = cfg.train
    return LaunchArgs(
        num_workers=t.num_workers,
        use_gpu=t.use_gpu,
        max_restarts=t.max_restarts,
        backup_every_steps=t.backup_every_steps,
        launch_timeout_s=t.launch_timeout_s,
        worker_threads=t.worker_threads,
        pin_cpus=t.pin_cpus,
    )


def model_params(cfg: Config, kind: str) -> Any:
    """The :class:`~sparktf.models.ModelParams` of one model kind."""
    from sparktf.models.base import ModelParams

    t = cfg.train
    return ModelParams(
        kind=kind,  # type: ignore[arg-type]
        embedding_dim=t.embedding_dim,
        rnn=t.rnn,
        max_history=cfg.features.max_history,
        dropout=t.dropout,
        softmax=t.softmax,
        num_sampled=t.num_sampled,
        tie_embeddings=t.tie_embeddings,
        mask_history=t.mask_history,
        two_tower_user_id=t.two_tower_user_id,
        two_tower_history=t.two_tower_history,
        temperature=t.temperature,
        attention_blocks=t.attention_blocks,
        attention_heads=t.attention_heads,
        repeat_buckets=t.repeat_buckets,
        repeat_recent=t.repeat_recent,
        session_breaks=cfg.features.session_breaks,
        seed=t.seed,
    )


def train_spec(
    cfg: Config, kind: str, *, run_dir: str, export_base: str, version: int, train_examples: int, run_id: str
) -> Any:
    """The :class:`~sparktf.training.train_fn.TrainSpec` every worker of one model gets."""
    from sparktf.training.train_fn import TrainSpec

    t = cfg.train
    tfr = cfg.paths.tfrecords
    return TrainSpec(
        params=model_params(cfg, kind),
        features_dir=cfg.paths.features,
        train_path=f"{tfr}/train",
        validation_path=f"{tfr}/validation",
        run_dir=run_dir,
        export_base=export_base,
        export_version=version,
        global_batch_size=t.batch_size,
        epochs=t.epochs,
        learning_rate=t.learning_rate,
        lr_decay=t.lr_decay,
        weight_decay=t.weight_decay,
        calibrate_taste=t.calibrate_taste,
        early_stopping_patience=t.early_stopping_patience,
        train_examples=train_examples,
        tracking_uri=cfg.tracking_uri,
        run_id=run_id,
        metric_prefix="",
    )


def _features_stats(cfg: Config) -> dict[str, Any]:
    path = FeaturePaths(cfg.paths.features).stats
    if not os.path.exists(path):
        raise DataError(f"{path} does not exist.", hint="Run `sparktf prepare` (the features stage) first.")
    with open(path, encoding="utf-8") as fh:
        stats: dict[str, Any] = json.load(fh)
    return stats


def _next_version(export_base: str) -> int:
    if not os.path.isdir(export_base):
        return 1
    versions = [int(d) for d in os.listdir(export_base) if d.isdigit()]
    return max(versions, default=0) + 1


def _train_examples(stats: dict[str, Any], kind: str) -> int:
    """The rows one epoch of ``kind`` reads: every train example, or the windows of a
    model that learns from every position of one (models/factory.py)."""
    from sparktf.models.factory import trains_on_windows

    splits = stats.get("examples") or {}
    if trains_on_windows(kind):
        if "train_windows" in stats:
            return int(stats["train_windows"])
    elif isinstance(splits, dict) and "train" in splits:
        return int(splits["train"])
    raise DataError(
        "stats.json of the features has no train example count.", hint="Rebuild the features with `sparktf prepare`."
    )


def _flat_counts(stats: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, int | float | str):
            flat[key] = value
        elif isinstance(value, dict):
            for k2, v2 in value.items():
                if isinstance(v2, int | float | str):
                    flat[f"{key}.{k2}"] = v2
    return flat


def run(cfg: Config) -> TrainResult:
    from sparktf.distributed.launcher import SparkRunner
    from sparktf.monitoring.reference import ReferenceQueries, load_reference_queries, write_export_reference
    from sparktf.runlog import worker_sink
    from sparktf.training.tracking import RunTracker, driver_tag, git_commit
    from sparktf.training.train_fn import train_worker
    from sparktf.version import __version__

    stats = _features_stats(cfg)
    spark = spark_for(cfg)
    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    launch = launch_args(cfg)
    # A driver killed mid-training leaves its run RUNNING forever; close it as FAILED.
    for run_id in tracker.fail_abandoned_runs(workdir=cfg.paths.root):
        print(f"Marked MLflow run {run_id} FAILED: the driver that started it is gone.")
    trained: list[TrainedModel] = []
    profile = profile_args(cfg)
    queries: ReferenceQueries | None = None
    for kind in cfg.train.models:
        export_base = cfg.paths.local("models", kind, "export")
        version = _next_version(export_base)
        # One directory per training run: restarts within the run resume from its
        # backup, a new run starts clean.
        run_dir = cfg.paths.local("models", kind, "runs", f"v{version}")
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)  # a failed earlier try at this same version
        os.makedirs(run_dir)
        run_id = tracker.start(
            f"{kind}-v{version}",
            tags={
                "model_kind": kind,
                "dataset": cfg.data.source,
                "git_commit": git_commit(),
                "sparktf_version": __version__,
                "workdir": cfg.paths.root,
                **driver_tag(),
            },
        )
        # Secrets (serve.auth_token) never reach the tracking store.
        tracker.log_params(config_to_dict(cfg, redact_secrets=True))
        tracker.log_text(config_to_toml(cfg, redact_secrets=True), "config.toml")
        tracker.log_dict(stats, "data/fingerprint.json")
        tracker.log_params(
            {
                "data": {
                    "features_path": cfg.paths.features,
                    "tfrecords_path": cfg.paths.tfrecords,
                    **_flat_counts(stats),
                }
            }
        )
        spec = train_spec(
            cfg,
            kind,
            run_dir=run_dir,
            export_base=export_base,
            version=version,
            train_examples=_train_examples(stats, kind),
            run_id=run_id,
        )
        t0 = time.perf_counter()
        try:
            # Every [train] launcher setting, as launch_args built it (tests check that function).
            result = SparkRunner(spark, log_sink=worker_sink()).run(
                train_worker, spec, strategy="custom", run_dir=run_dir, **dataclasses.asdict(launch)
            )
        except Exception:
            tracker.end("FAILED")
            raise
        summary = result.value
        if not isinstance(summary, dict) or "export_path" not in summary:
            tracker.end("FAILED")
            raise ModelError(
                f"Training {kind} returned no export (got {type(summary).__name__}).", hint="See the worker logs above."
            )
        train_seconds = time.perf_counter() - t0
        tracker.log_metrics(summary.get("final_metrics", {}), step=summary.get("epochs_run", 0), prefix="final/")
        tracker.log_metrics(
            {"train_seconds": train_seconds, "examples_per_second": summary.get("examples_per_second", 0.0)},
            prefix="perf/",
        )
        # The reference profile goes into the export before it is logged, so that every
        # copy of the version (MLflow model, registry download) carries it.
        if queries is None:  # read once, for every model of the run
            queries = load_reference_queries(
                spark,
                cfg.paths.features,
                exclude_seen=profile.exclude_seen,
                popularity_shares=profile.popularity_shares,
            )
        reference, _ = write_export_reference(
            queries,
            summary["export_path"],
            score_bins=profile.score_bins,
            length_bins=profile.length_bins,
            top_categories=profile.top_categories,
            batch_size=profile.batch_size,
        )
        tracker.log_dict(reference.to_dict(), "monitoring/reference_profile.json")
        # The launcher's history spans restarts; the worker's only its last attempt.
        history = result.history or summary.get("history", {})
        tracker.log_history_plot(history, f"plots/{kind}_training.png", title=kind)
        model_uri = tracker.log_model(summary["export_path"], kind)
        tracker.set_tags({"export_path": summary["export_path"], "logged_model_uri": model_uri})
        tracker.end()
        trained.append(
            TrainedModel(
                kind=kind,
                run_id=run_id,
                export_path=summary["export_path"],
                model_uri=model_uri,
                version=version,
                epochs_run=int(summary.get("epochs_run") or 0),
                final_metrics={k: float(v) for k, v in (summary.get("final_metrics") or {}).items()},
                examples_per_second=float(summary.get("examples_per_second") or 0.0),
                workers=launch.num_workers,
                restarts=int(result.restarts),
                history={k: [float(x) for x in v] for k, v in (history or {}).items()},
                train_seconds=train_seconds,
            )
        )
    return TrainResult(models=tuple(trained))
