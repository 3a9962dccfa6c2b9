"""Build a recommender by name from a catalogue and parameters."""

from __future__ import annotations

from typing import Any

from sparktf.errors import ModelError
from sparktf.models.base import ModelParams
from sparktf.models.catalog import Catalog

__all__ = ["MODEL_KINDS", "WINDOW_KINDS", "build_model", "trains_on_windows"]

MODEL_KINDS = ("sequential", "sasrec", "two_tower")
#: The kinds that learn from every position of a history window, so they train on the
#: examples marked ``window_end`` only (see data/features.py and models/sasrec.py).
WINDOW_KINDS = ("sasrec",)


def trains_on_windows(kind: str) -> bool:
    """Whether a model of ``kind`` trains on the ``window_end`` examples only."""
    return kind in WINDOW_KINDS


def build_model(catalog: Catalog, params: ModelParams) -> Any:
    """Return an (unbuilt, uncompiled) Keras model of ``params.kind``."""
    if params.kind == "sequential":
        from sparktf.models.sequential import SequentialRecommender

        return SequentialRecommender(catalog, params)
    if params.kind == "sasrec":
        from sparktf.models.sasrec import SelfAttentionRecommender

        return SelfAttentionRecommender(catalog, params)
    if params.kind == "two_tower":
        from sparktf.models.two_tower import TwoTowerRecommender

        return TwoTowerRecommender(catalog, params)
    raise ModelError(f"Unknown model kind {params.kind!r}; choose one of {', '.join(MODEL_KINDS)}.")
