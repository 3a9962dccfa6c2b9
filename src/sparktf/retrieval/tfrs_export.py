"""The TensorFlow Recommenders ScaNN layer as a SavedModel: raw query features in,
top-K item ids out.

This is how the original design serves lookups: one SavedModel that TensorFlow
Serving (the ``google/tf-serving-scann`` image, which links the ScaNN ops) or
``tf.saved_model.load`` can call with ``user_id`` and ``history``. Our own
serving and batch paths use :class:`~sparktf.retrieval.index.ScannIndex` (pybind,
with exclusions) next to the model export instead; this export is the
all-in-TensorFlow alternative.

The query model is the model export's own ``serve`` function (raw ids in, the
query embedding out), called from the loaded SavedModel rather than rebuilt from
Keras: the export is what the registry holds, and it already carries the id
vocabularies, so the two SavedModels cannot disagree about a query. The ScaNN ops
live in the ``Scann`` namespace, so the SavedModel is written with
``SaveOptions(namespace_whitelist=["Scann"])``.

Why our own code: TFRS builds the layer but not the serving signature around a
loaded export, nor the manifest that says which model and settings it holds.

Layout (TensorFlow Serving's ``<base>/<version>/``)::

    <out>/saved_model.pb, variables/     signature serving_default:
                                         user_id [B] string, history [B, N] string
                                         -> top_k_ids [B, k] string, top_k_scores [B, k] float32
    <out>/assets.extra/sparktf.json      source model, k, ScaNN settings
"""

from __future__ import annotations

import json
import os
from typing import Any

from sparktf.errors import AnnIndexError
from sparktf.retrieval.index import ScannParams

__all__ = ["export_tfrs_scann", "load_tfrs_scann"]


def export_tfrs_scann(model_dir: str, out_dir: str, *, k: int = 100, params: ScannParams | None = None) -> str:
    """Write the TFRS ScaNN layer over the export at ``model_dir`` to ``out_dir``.

    Args:
        model_dir: a model export (``<base>/<version>/`` of :func:`~sparktf.models.export.export_model`).
        out_dir: where the SavedModel goes; must not hold one already.
        k: results per query (capped at the catalogue size).
        params: ScaNN settings (leaves, leaves to search, reorder, dims per block);
            default: :class:`ScannParams` resolved for the catalogue.

    Returns:
        ``out_dir``.

    Raises:
        AnnIndexError: ``out_dir`` already holds a SavedModel, or ScaNN's TF op fails.
        ModelError: no export at ``model_dir``.
    """
    from sparktf.models.export import load_exported
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    if os.path.exists(os.path.join(out_dir, "saved_model.pb")):
        raise AnnIndexError(f"{out_dir} already holds a SavedModel.", hint="Export to a new directory.")
    try:
        import tensorflow_recommenders as tfrs
        from scann.scann_ops.py import scann_ops  # noqa: F401 - registers the Scann ops
    except ImportError as exc:
        raise AnnIndexError(
            f"The TFRS ScaNN export needs tensorflow-recommenders and scann's TF op ({exc}).",
            hint="pip install tensorflow-recommenders==0.7.7 'scann[tf]==1.4.2'",
        ) from exc

    exported = load_exported(model_dir)
    loaded = exported.signature._sparktf_owner
    num_items = len(exported.item_ids)
    k = int(min(k, num_items))
    p = (params or ScannParams()).resolved(num_items)

    class QueryModel(tf.keras.Model):  # type: ignore[name-defined]
        """Raw ``user_id`` and ``history`` → the export's query embedding."""

        def __init__(self) -> None:
            super().__init__(name="query_model")
            self.export = loaded

        def call(self, features: dict[str, Any]) -> Any:
            return self.export.serve(features["user_id"], features["history"])["query_embedding"]

    layer = tfrs.layers.factorized_top_k.ScaNN(
        query_model=QueryModel(),
        k=k,
        distance_measure="dot_product",
        num_leaves=p.num_leaves,
        num_leaves_to_search=p.leaves_to_search,
        dimensions_per_block=p.dims_per_block,
        num_reordering_candidates=p.reorder,
    )
    try:
        layer.index(tf.constant(exported.item_embeddings), tf.constant(exported.item_ids.astype(str)))
    except Exception as exc:  # ScaNN's op raises tf.errors / RuntimeError from C++
        raise AnnIndexError(
            f"The TFRS ScaNN layer could not index {num_items} items with {p}: {exc}",
            hint="Lower num_leaves, or skip the TFRS export (index.tfrs_export = false).",
        ) from exc

    class Serving(tf.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            # Tracked from the root as well: Keras does not hand a restored SavedModel's
            # lookup tables to tf.saved_model.save through the layer's query model.
            self.query_export = loaded

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None, None], tf.string, name="history"),
            ]
        )
        def serve(self, user_id: Any, history: Any) -> dict[str, Any]:
            scores, ids = self.layer({"user_id": user_id, "history": history})
            return {"top_k_ids": ids, "top_k_scores": scores}

    module = Serving()
    # Trace once here, so a shape or op error shows up at export and not at the first request.
    module.serve(tf.constant([""]), tf.constant([[""]]))
    tf.saved_model.save(
        module,
        out_dir,
        signatures={"serving_default": module.serve},
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
    )
    extra = os.path.join(out_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    meta = {
        "kind": "tfrs_scann",
        "source_model": os.path.abspath(model_dir),
        "k": k,
        "num_items": num_items,
        "params": p.to_dict(),
        "signature_inputs": ["user_id", "history"],
        "signature_outputs": ["top_k_ids", "top_k_scores"],
    }
    with open(os.path.join(extra, "sparktf.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return out_dir


def load_tfrs_scann(path: str) -> Any:
    """Load the SavedModel of :func:`export_tfrs_scann` and return its ``serving_default``
    (call it as ``fn(user_id=tf.constant([...]), history=tf.constant([[...]]))``).

    Loading needs the ScaNN TF op registered, which importing ``scann`` does.
    """
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise AnnIndexError(f"No TFRS ScaNN SavedModel at {path}.", hint="Export one with `sparktf index`.")
    try:
        from scann.scann_ops.py import scann_ops  # noqa: F401 - registers the Scann ops
    except ImportError as exc:
        raise AnnIndexError(
            f"Loading {path} needs scann's TF op ({exc}).", hint="pip install 'scann[tf]==1.4.2'"
        ) from exc
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    fn._sparktf_owner = loaded  # keep the resources alive as long as the function
    return fn
