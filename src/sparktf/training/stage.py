"""The ``train`` and ``evaluate`` stages of the pipeline (driver side).

``train``: for each model in ``train.models``, open an MLflow run (params, the
config, the data fingerprint, tags), run :func:`~sparktf.training.worker.train_worker`
on ``train.num_workers`` Spark barrier tasks (or in-process with 0), then log the
training curves and the export as a logged model.

``evaluate``: full-catalogue evaluation of every trained model and the baselines
on the same test split, logged to each model's run and printed as one table.

Both write what the next stages need to ``<workdir>/state/<stage>.json``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sparktf.config import Config, config_to_dict, config_to_toml
from sparktf.errors import DataError, ModelError, PipelineError

#: The columns printed to the terminal; the full table goes to MLflow.
SUMMARY_METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr", "coverage@10")

__all__ = ["evaluate_stage", "exported_score_fn", "model_params", "read_state", "train_stage", "write_state"]


def model_params(cfg: Config, kind: str) -> Any:
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
        seed=t.seed,
    )


def write_state(cfg: Config, stage: str, data: dict[str, Any]) -> str:
    path = cfg.paths.state_file(f"{stage}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
    os.replace(tmp, path)
    return path


def read_state(cfg: Config, stage: str) -> dict[str, Any]:
    path = cfg.paths.state_file(f"{stage}.json")
    if not os.path.exists(path):
        raise PipelineError(
            f"{path} does not exist: stage {stage!r} has not run in this workdir.",
            hint=f"Run `sparktf run --from {stage}`.",
        )
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _features_stats(cfg: Config) -> dict[str, Any]:
    path = os.path.join(cfg.paths.features, "stats.json")
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


def _train_examples(stats: dict[str, Any]) -> int:
    for key in ("train_examples", "examples_train"):
        if key in stats:
            return int(stats[key])
    splits = stats.get("examples") or stats.get("rows") or {}
    if isinstance(splits, dict) and "train" in splits:
        return int(splits["train"])
    raise DataError(
        "stats.json of the features has no train example count.", hint="Rebuild the features with `sparktf prepare`."
    )


def train_stage(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    from sparktf import __version__
    from sparktf.distributed.launcher import SparkRunner
    from sparktf.spark import get_spark
    from sparktf.training.tracking import RunTracker, git_commit
    from sparktf.training.worker import TrainSpec, train_worker

    stats = _features_stats(cfg)
    spark = get_spark(cfg.spark)
    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    tfr = cfg.paths.tfrecords
    out: dict[str, Any] = {"models": {}}
    for kind in cfg.train.models:
        export_base = cfg.paths.local("models", kind, "export")
        version = _next_version(export_base)
        # One directory per training run: restarts within the run resume from its
        # backup, a new run starts clean.
        run_dir = cfg.paths.local("models", kind, "runs", f"v{version}")
        if os.path.exists(run_dir):
            import shutil

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
            },
        )
        tracker.log_params(config_to_dict(cfg))
        tracker.log_text(config_to_toml(cfg), "config.toml")
        tracker.log_dict(stats, "data/fingerprint.json")
        tracker.log_params(
            {"data": {"features_path": cfg.paths.features, "tfrecords_path": tfr, **_flat_counts(stats)}}
        )
        spec = TrainSpec(
            params=model_params(cfg, kind),
            features_dir=cfg.paths.features,
            train_path=f"{tfr}/train",
            validation_path=f"{tfr}/validation",
            run_dir=run_dir,
            export_base=export_base,
            export_version=version,
            global_batch_size=cfg.train.batch_size,
            epochs=cfg.train.epochs,
            learning_rate=cfg.train.learning_rate,
            lr_decay=cfg.train.lr_decay,
            early_stopping_patience=cfg.train.early_stopping_patience,
            train_examples=_train_examples(stats),
            top_k=cfg.index.k,
            tracking_uri=cfg.tracking_uri,
            run_id=run_id,
            metric_prefix="",
        )
        t0 = time.perf_counter()
        try:
            result = SparkRunner(spark).run(
                train_worker,
                spec,
                num_workers=cfg.train.num_workers,
                strategy="custom",
                use_gpu=cfg.train.use_gpu,
                max_restarts=cfg.train.max_restarts,
                run_dir=run_dir,
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
        tracker.log_metrics(summary.get("final_metrics", {}), step=summary.get("epochs_run", 0), prefix="final/")
        tracker.log_metrics(
            {"train_seconds": time.perf_counter() - t0, "examples_per_second": summary.get("examples_per_second", 0.0)},
            prefix="perf/",
        )
        # The launcher's history spans restarts; the worker's only its last attempt.
        history = result.history or summary.get("history", {})
        tracker.log_history_plot(history, f"plots/{kind}_training.png", title=kind)
        model_uri = tracker.log_model(summary["export_path"], kind)
        tracker.set_tags({"export_path": summary["export_path"], "logged_model_uri": model_uri})
        tracker.end()
        out["models"][kind] = {
            "run_id": run_id,
            "export_path": summary["export_path"],
            "model_uri": model_uri,
            "version": version,
            "epochs_run": summary.get("epochs_run"),
            "final_metrics": summary.get("final_metrics", {}),
            "examples_per_second": summary.get("examples_per_second"),
            "workers": cfg.train.num_workers,
            "restarts": result.restarts,
            "history": history,
        }
    write_state(cfg, "train", out)
    return out


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


def exported_score_fn(export_path: str, catalogue: Any) -> Any:
    """A ``score_fn`` for :func:`sparktf.evaluation.evaluate_scores` backed by an export.

    Scores are the export's query embedding dotted with its item embeddings, with
    columns reordered to ``catalogue`` (the evaluation's item order).
    """
    import numpy as np

    from sparktf.models.export import load_exported

    model = load_exported(export_path)
    position = {str(i): n for n, i in enumerate(model.item_ids.tolist())}
    missing = [str(i) for i in catalogue if str(i) not in position]
    if missing:
        raise ModelError(
            f"The model at {export_path} does not know {len(missing)} catalogue items (first {missing[0]!r}).",
            hint="Evaluate a model trained on these features, or retrain.",
        )
    columns = np.asarray([position[str(i)] for i in catalogue])
    items = model.item_embeddings[columns]

    def score(frame: Any) -> Any:
        users = frame["user_id"].astype(str).tolist() if "user_id" in frame else [""] * len(frame)
        hist = [list(h) if h is not None else [] for h in frame["history"]]
        q = model(users, hist)["query_embedding"]
        return q @ items.T

    return score


def evaluate_stage(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    from rich.console import Console

    from sparktf.evaluation import evaluate_baselines, evaluate_scores, load_eval_set
    from sparktf.evaluation.report import comparison_markdown, log_to_mlflow, rich_table
    from sparktf.spark import get_spark
    from sparktf.training.tracking import RunTracker

    trained = read_state(cfg, "train")["models"]
    spark = get_spark(cfg.spark)
    eval_set = load_eval_set(spark, cfg.paths.features, split="test", exclude_seen=cfg.evaluation.exclude_seen)
    results = {}
    for kind, info in trained.items():
        score = exported_score_fn(info["export_path"], eval_set.item_ids)
        results[kind] = evaluate_scores(eval_set, score, model=kind, ks=cfg.evaluation.ks)
    baselines = evaluate_baselines(spark, cfg.paths.features, cfg.evaluation, eval_set=eval_set)
    everything = {**results, **baselines}
    shown = [m for m in SUMMARY_METRICS if any(m in r.overall for r in everything.values())]
    Console(highlight=False).print(rich_table(list(everything.values()), shown))
    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    table = comparison_markdown(list(everything.values()))
    for kind, info in trained.items():
        log_to_mlflow(results[kind], run_id=info["run_id"], tracking_uri=cfg.tracking_uri, prefix="test/")
        for name, res in baselines.items():
            log_to_mlflow(res, run_id=info["run_id"], tracking_uri=cfg.tracking_uri, prefix=f"baseline/{name}/")
        tracker.run_id = info["run_id"]
        tracker.log_text(table, "evaluation/comparison.md")
    out = {name: res.to_dict() for name, res in everything.items()}
    write_state(cfg, "evaluate", {"results": out, "table": table})
    return {"models": list(results), "baselines": list(baselines), "table": table}
