"""Build a recommender by name from a catalogue and parameters."""

from __future__ import annotations

from typing import Any

from sparktf.errors import ModelError
from sparktf.models.base import ModelParams
from sparktf.models.catalog import Catalog

__all__ = ["MODEL_KINDS", "build_model"]

MODEL_KINDS = ("sequential", "two_tower")


def build_model(catalog: Catalog, params: ModelParams) -> Any:
    """Return an (unbuilt, uncompiled) Keras model of ``params.kind``."""
    if params.kind == "sequential":
        from sparktf.models.sequential import SequentialRecommender

        return SequentialRecommender(catalog, params)
    if params.kind == "two_tower":
        from sparktf.models.two_tower import TwoTowerRecommender

        return TwoTowerRecommender(catalog, params)
    raise ModelError(f"Unknown model kind {params.kind!r}; choose one of {', '.join(MODEL_KINDS)}.")
