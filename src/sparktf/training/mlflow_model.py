"""The exported recommender as an MLflow pyfunc model.

This is what the registry holds and what ``mlflow models serve``,
``mlflow.pyfunc.load_model`` and ``mlflow.pyfunc.spark_udf`` run: a thin wrapper
around the SavedModel export (raw ids in; top-K ids, scores and the query
embedding out). Input: a DataFrame with ``user_id`` (string) and ``history``
(list of item ids, most recent last); either may be missing or empty.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

__all__ = ["RecommenderPyfunc", "pip_requirements"]


def pip_requirements() -> list[str]:
    """The pins a served model needs (sparktf itself is installed beside MLflow)."""
    reqs = []
    for dist in ("tensorflow", "tf-keras", "numpy", "pandas"):
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs


def _python_model_base() -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class RecommenderPyfunc(_python_model_base()):  # type: ignore[misc]
    """``predict(df) -> df`` with columns ``top_k_ids``, ``top_k_scores``, ``query_embedding``."""

    def load_context(self, context: Any) -> None:
        from sparktf.tfenv import ensure_legacy_keras

        ensure_legacy_keras()  # TF_USE_LEGACY_KERAS before TensorFlow loads
        from sparktf.models.export import load_exported

        self.model = load_exported(context.artifacts["savedmodel"])

    # No type hints here on purpose: MLflow reads predict's hints as an input schema
    # and warns (or validates wrongly) when they are not list[...] of records.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import pandas as pd

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        n = len(df)
        users = df["user_id"].astype(str).tolist() if "user_id" in df else [""] * n
        if "history" in df:
            histories = [
                list(h) if h is not None and not isinstance(h, str) else ([h] if h else []) for h in df["history"]
            ]
        else:
            histories = [[] for _ in range(n)]
        out = self.model(users, histories)
        return pd.DataFrame(
            {
                "top_k_ids": [[x.decode() for x in row] for row in out["top_k_ids"]],
                "top_k_scores": [row.tolist() for row in out["top_k_scores"]],
                "query_embedding": [row.tolist() for row in out["query_embedding"]],
            }
        )
