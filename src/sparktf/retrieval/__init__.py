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

from sparktf._lazy import lazy_exports

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

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
