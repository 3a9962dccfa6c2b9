"""Full-catalogue evaluation of models and baselines, under one stated protocol.

* :mod:`~sparktf.evaluation.metrics`: HR@K, NDCG@K, MRR, coverage@K and slices (numpy only).
* :mod:`~sparktf.evaluation.evalset`: the queries of a split read from the features, and
  :func:`evaluate_scores`, which models call with a ``score_fn``.
* :mod:`~sparktf.evaluation.baselines`: most-popular, last-item co-occurrence, Spark ALS.
* :mod:`~sparktf.evaluation.report`: markdown, rich and JSON reports, and MLflow logging.

Names are resolved on first use, so importing this package loads neither numpy nor
Spark.
"""

from __future__ import annotations

from sparktf._lazy import lazy_exports

_EXPORTS = {
    "EvaluationResult": "metrics",
    "Exclusions": "metrics",
    "EvalProtocol": "metrics",
    "Queries": "metrics",
    "evaluate_ranking": "metrics",
    "evaluate_ranked_lists": "metrics",
    "EvalSet": "evalset",
    "evaluate_scores": "evalset",
    "load_eval_set": "evalset",
    "Baseline": "baselines",
    "evaluate_baselines": "baselines",
    "comparison_markdown": "report",
    "log_to_mlflow": "report",
    "print_report": "report",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
