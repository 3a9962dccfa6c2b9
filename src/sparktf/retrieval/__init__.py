"""Nearest-neighbour retrieval over a model's item embeddings.

* :mod:`~sparktf.retrieval.index`: the :class:`~sparktf.retrieval.index.AnnIndex`
  interface, :class:`~sparktf.retrieval.index.ScannIndex` (ScaNN, pybind) and
  :class:`~sparktf.retrieval.index.BruteForceIndex` (exact numpy), with
  :func:`~sparktf.retrieval.index.build_index` and :func:`~sparktf.retrieval.index.load_index`.
* :mod:`~sparktf.retrieval.tuning`: pick ScaNN's leaves, leaves to search and reorder
  size for a target recall@K measured against brute force, and log it to MLflow.
* :mod:`~sparktf.retrieval.tfrs_export`: the TensorFlow Recommenders ScaNN layer as a
  SavedModel (raw query features in, top-K item ids out).

Names resolve on first use, so importing this package loads neither numpy nor ScaNN.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AnnIndex": "index",
    "BruteForceIndex": "index",
    "ScannIndex": "index",
    "ScannParams": "index",
    "build_index": "index",
    "load_index": "index",
    "TuningResult": "tuning",
    "tune_index": "tuning",
    "log_tuning_to_mlflow": "tuning",
    "export_tfrs_scann": "tfrs_export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparktf.retrieval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sparktf.retrieval.{module}"), name)
