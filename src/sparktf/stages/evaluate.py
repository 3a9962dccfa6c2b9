"""Stage 6, ``evaluate``: every trained model and the baselines over the full catalogue.

The queries of ``evaluation.split`` (the same protocol the gate uses, see
:mod:`sparktf.stages._evaluation`), logged to each model's MLflow run and printed as
one table.
"""

from __future__ import annotations

from sparktf.config import Config
from sparktf.stages._common import console, spark_for
from sparktf.stages._evaluation import eval_args, load_queries, score_export
from sparktf.stages.state import EvaluateResult, TrainResult, read_result

__all__ = ["SUMMARY_METRICS", "run"]

#: The columns printed to the terminal; the full table goes to MLflow.
SUMMARY_METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr", "coverage@10")


def run(cfg: Config) -> EvaluateResult:
    from sparktf.evaluation import evaluate_baselines
    from sparktf.evaluation.report import comparison_markdown, log_to_mlflow, rich_table
    from sparktf.models.export import load_exported
    from sparktf.training.tracking import RunTracker

    trained = read_result(cfg.paths, TrainResult)
    args = eval_args(cfg)
    spark = spark_for(cfg)
    eval_set = load_queries(spark, args)
    results = {
        m.kind: score_export(eval_set, load_exported(m.export_path), model=m.kind, args=args) for m in trained.models
    }
    baselines = evaluate_baselines(spark, args.features_path, cfg.evaluation, eval_set=eval_set)
    everything = {**results, **baselines}
    shown = [m for m in SUMMARY_METRICS if any(m in r.overall for r in everything.values())]
    console().print(rich_table(list(everything.values()), shown))
    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    table = comparison_markdown(list(everything.values()))
    for m in trained.models:
        log_to_mlflow(results[m.kind], run_id=m.run_id, tracking_uri=cfg.tracking_uri, prefix=f"{args.split}/")
        for name, res in baselines.items():
            log_to_mlflow(res, run_id=m.run_id, tracking_uri=cfg.tracking_uri, prefix=f"baseline/{name}/")
        tracker.run_id = m.run_id
        tracker.log_text(table, "evaluation/comparison.md")
    return EvaluateResult(
        split=args.split, results={name: res.to_dict() for name, res in everything.items()}, table=table
    )
