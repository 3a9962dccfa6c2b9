"""Batch inference on Spark and the ``recommend`` SQL function.

* :mod:`~sparktf.inference.batch`: user contexts from the features and the Spark job
  that writes top-K recommendations for every user.
* :mod:`~sparktf.inference.sql`: ``recommend(user_id, k)`` for Spark SQL.
* :mod:`~sparktf.inference.resolve`: which model export to use (registry URI, path,
  latest export).

Names resolve on first use, so importing this package loads neither Spark nor TensorFlow.
"""

from __future__ import annotations

from sparktf._lazy import lazy_exports

_EXPORTS = {
    "BatchCounters": "batch",
    "recommend_batch": "batch",
    "recommend_local": "batch",
    "user_contexts": "batch",
    "register_recommend": "sql",
    "ModelRef": "resolve",
    "resolve_model": "resolve",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
