"""Stage 6, ``evaluate``: every trained model and the baselines over the full catalogue.

The queries of ``evaluation.split`` (the same protocol the gate uses, see
:mod:`sparktf.stages._evaluation`), scored under both protocols of
:mod:`sparktf.evaluation.protocols` (product and literature), logged to each model's
MLflow run as ``<split>/<protocol>/<metric>`` and ``baseline/<name>/<protocol>/<metric>``
and printed as one table per protocol.
"""

from __future__ import annotations

from typing import Any

from sparktf.config import Config
from sparktf.stages._common import console, spark_for
from sparktf.stages._evaluation import eval_args, load_queries, score_export
from sparktf.stages.state import EvaluateResult, TrainResult, read_result

__all__ = ["SUMMARY_METRICS", "quality_tables", "run"]

#: The columns printed to the terminal; the full table goes to MLflow.
SUMMARY_METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr", "coverage@10")


def quality_tables(by_protocol: dict[str, list[Any]]) -> list[Any]:
    """One rich table per protocol (``{protocol: [EvaluationResult]}``), summary columns only."""
    from sparktf.evaluation.report import rich_table

    tables = []
    for results in by_protocol.values():
        if results:
            shown = [m for m in SUMMARY_METRICS if any(m in r.overall for r in results)]
            tables.append(rich_table(results, shown))
    return tables


def run(cfg: Config) -> EvaluateResult:
    from sparktf.evaluation.baselines import evaluate_baselines_under
    from sparktf.evaluation.protocols import PROTOCOLS, under
    from sparktf.evaluation.report import comparison_markdown, log_to_mlflow
    from sparktf.models.export import load_exported
    from sparktf.training.tracking import RunTracker

    trained = read_result(cfg.paths, TrainResult)
    args = eval_args(cfg)
    spark = spark_for(cfg)
    product = load_queries(spark, args)
    exports = {m.kind: load_exported(m.export_path) for m in trained.models}
    eval_sets: dict[str, Any] = {protocol: under(product, protocol) for protocol in PROTOCOLS}
    baselines = evaluate_baselines_under(spark, args.features_path, cfg.evaluation, eval_sets)
    everything: dict[str, dict[str, Any]] = {}
    for protocol, eval_set in eval_sets.items():
        results = {kind: score_export(eval_set, ex, model=kind, args=args) for kind, ex in exports.items()}
        everything[protocol] = {**results, **baselines[protocol]}
    for table in quality_tables({p: list(r.values()) for p, r in everything.items()}):
        console().print(table)
    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    table = "\n".join(comparison_markdown(list(everything[p].values())) for p in PROTOCOLS)
    baseline_names = [name for name in everything["product"] if name not in exports]
    for m in trained.models:
        for protocol in PROTOCOLS:
            results = everything[protocol]
            log_to_mlflow(
                results[m.kind],
                run_id=m.run_id,
                tracking_uri=cfg.tracking_uri,
                prefix=f"{args.split}/{protocol}/",
                artifact_dir=f"evaluation/{protocol}",
            )
            for name in baseline_names:
                log_to_mlflow(
                    results[name],
                    run_id=m.run_id,
                    tracking_uri=cfg.tracking_uri,
                    prefix=f"baseline/{name}/{protocol}/",
                    artifact_dir=f"evaluation/{protocol}",
                )
        tracker.run_id = m.run_id
        tracker.log_text(table, "evaluation/comparison.md")
    return EvaluateResult(
        split=args.split,
        results={name: res.to_dict() for name, res in everything["product"].items()},
        table=table,
        literature={name: res.to_dict() for name, res in everything["literature"].items()},
    )
