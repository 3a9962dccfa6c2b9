"""Recommender models: the sequential next-item model and the two-tower retrieval model.

Both map raw string ids to indices with lookup layers that live inside the model,
so the exported SavedModel takes raw ids and no train/serve skew is possible.
Import TensorFlow only through the submodules.
"""

from __future__ import annotations

__all__ = ["Catalog", "ModelParams", "build_model", "export_model", "load_exported"]


def __getattr__(name: str) -> object:
    if name == "Catalog":
        from sparktf.models.catalog import Catalog

        return Catalog
    if name == "ModelParams":
        from sparktf.models.base import ModelParams

        return ModelParams
    if name == "build_model":
        from sparktf.models.factory import build_model

        return build_model
    if name in ("export_model", "load_exported"):
        from sparktf.models import export

        return getattr(export, name)
    raise AttributeError(f"module 'sparktf.models' has no attribute {name!r}")
