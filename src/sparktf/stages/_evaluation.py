"""The evaluation protocol of ``[evaluation]``, shared by the ``evaluate`` stage and the gate.

Both read the same queries (``evaluation.split``, ``exclude_seen``,
``popularity_shares``) and score with the same cut-offs and batch size, so the quality
table printed after a run and the validation gate measure the same thing. The stage
reports both protocols (:mod:`sparktf.evaluation.protocols`); the gate checks the one
``gate.protocol`` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sparktf.registry.gate import ModelMetrics
    from sparktf.registry.promote import EvaluateFn

__all__ = ["EvalArgs", "catalogue_evaluator", "eval_args", "load_queries", "score_export"]


@dataclass(frozen=True)
class EvalArgs:
    """The arguments of :func:`~sparktf.evaluation.load_eval_set` and
    :func:`~sparktf.evaluation.evaluate_scores`."""

    features_path: str
    split: str
    exclude_seen: bool
    popularity_shares: tuple[float, ...]
    ks: tuple[int, ...]
    batch_size: int
    gate_protocol: str = "product"


def eval_args(cfg: Config) -> EvalArgs:
    ev = cfg.evaluation
    return EvalArgs(
        features_path=cfg.paths.features,
        split=ev.split,
        exclude_seen=ev.exclude_seen,
        popularity_shares=ev.popularity_shares,
        ks=ev.ks,
        batch_size=ev.batch_size,
        gate_protocol=cfg.gate.protocol,
    )


def load_queries(spark: SparkSession, args: EvalArgs) -> Any:
    from sparktf.evaluation.evalset import load_eval_set

    return load_eval_set(
        spark,
        args.features_path,
        split=args.split,
        exclude_seen=args.exclude_seen,
        popularity_shares=args.popularity_shares,
    )


def score_export(eval_set: Any, exported: Any, *, model: str, args: EvalArgs) -> Any:
    """Full-catalogue evaluation of a loaded export (:func:`sparktf.evaluation.scoring.export_score_fn`)."""
    from sparktf.evaluation.evalset import evaluate_scores
    from sparktf.evaluation.scoring import export_score_fn

    return evaluate_scores(
        eval_set, export_score_fn(exported, eval_set.item_ids), model=model, ks=args.ks, batch_size=args.batch_size
    )


def catalogue_evaluator(spark: SparkSession, args: EvalArgs, *, tracking_uri: str) -> EvaluateFn:
    """The gate's ``evaluate_fn``: full-catalogue evaluation of a model URI.

    The queries are read once; every model URI is downloaded and scored on them with
    the same protocol (``gate.protocol``). Results are kept per model files, so a model evaluated before
    registration is not scored again by the promotion.
    """
    from sparktf.evaluation.protocols import under
    from sparktf.models.export import load_exported
    from sparktf.registry.gate import as_model_metrics
    from sparktf.registry.load import download_model, export_dir

    eval_set = under(load_queries(spark, args), args.gate_protocol)
    done: dict[str, ModelMetrics] = {}

    def evaluate(uri: str) -> ModelMetrics:
        local, info = download_model(uri, tracking_uri=tracking_uri)
        if local not in done:
            exported = load_exported(export_dir(local))
            result = score_export(eval_set, exported, model=info.label if info else uri, args=args)
            done[local] = as_model_metrics(result)
        return done[local]

    return evaluate
