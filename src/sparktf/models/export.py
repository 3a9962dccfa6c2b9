"""Export a trained recommender as a SavedModel that serves raw ids.

Layout, as TensorFlow Serving expects (``<base>/<version>/``)::

    <base>/<version>/saved_model.pb, variables/        the model
    <base>/<version>/assets.extra/item_ids.txt         catalogue, one id per line
    <base>/<version>/assets.extra/item_embeddings.npy  [num_items, dim] float32
    <base>/<version>/assets.extra/sparktf.json         kind, params, k, dims

Signature ``serving_default``: ``user_id`` string [B] and ``history`` string
[B, N] (right-padded with ""; most recent item last) in; ``query_embedding``
[B, dim], ``top_k_ids`` string [B, k] and ``top_k_scores`` [B, k] out. The
vocabularies are lookup tables inside the graph, so unknown ids map to the
out-of-vocabulary index instead of failing.

A version is written whole in a hidden folder beside it (``<base>/.<version>.partial-*``)
and renamed into place, so a server polling the base path (TF Serving, ``sparktf
serve``) never sees a version folder without its variables or its ``assets.extra``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparktf.errors import ModelError

__all__ = ["SIGNATURE_INPUTS", "ExportedModel", "export_model", "load_exported"]

SIGNATURE_INPUTS = ("user_id", "history")


def export_model(
    model: Any, base_dir: str, version: int = 1, *, k: int = 100, extra: dict[str, Any] | None = None
) -> str:
    """Write ``model`` to ``<base_dir>/<version>/`` and return that path.

    Args:
        model: a built sparktf recommender (``query_vectors``/``item_vectors``).
        base_dir: the TF Serving base path of this model.
        version: the numbered version directory.
        k: how many items ``serving_default`` returns (capped at the catalogue size).
        extra: JSON-able facts stored in ``assets.extra/sparktf.json``.
    """
    from sparktf.models.layers import tf

    path = os.path.join(base_dir, str(int(version)))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        what = "a SavedModel" if os.path.exists(os.path.join(path, "saved_model.pb")) else "files"
        raise ModelError(f"{path} already holds {what}.", hint="Export to a new version number.")
    model.ensure_built()
    item_ids = model.catalog.item_ids.astype(str)
    k = int(min(k, len(item_ids)))
    item_vectors = np.asarray(model.item_vectors(), dtype=np.float32)

    class Serving(tf.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.items = tf.Variable(item_vectors, trainable=False, name="item_vectors")
            self.ids = tf.Variable(item_ids, trainable=False, name="item_ids", dtype=tf.string)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None, None], tf.string, name="history"),
            ]
        )
        def serve(self, user_id: Any, history: Any) -> dict[str, Any]:
            feats = self.model.prepare({"user_id": user_id, "history": history})
            q = self.model.query_vectors(feats, training=False)
            scores = tf.matmul(q, self.items, transpose_b=True)
            top = tf.math.top_k(scores, k=k)
            return {
                "query_embedding": q,
                "top_k_ids": tf.gather(self.ids, top.indices),
                "top_k_scores": top.values,
            }

    module = Serving()
    # Trace once so shape errors show up here, not in the first request.
    module.serve(tf.constant(["u"]), tf.constant([[""]]))
    meta = {
        "kind": model.params.kind,
        "params": model.params.to_dict(),
        "k": k,
        "num_items": len(item_ids),
        "dim": int(item_vectors.shape[1]),
        "signature_inputs": list(SIGNATURE_INPUTS),
        **(extra or {}),
    }
    os.makedirs(base_dir, exist_ok=True)
    # A hidden name: TF Serving and sparktf serve take only all-digit folders as versions.
    staging = os.path.join(base_dir, f".{int(version)}.partial-{uuid.uuid4().hex[:12]}")
    os.mkdir(staging)
    try:
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serve})
        extra_dir = os.path.join(staging, "assets.extra")
        os.makedirs(extra_dir, exist_ok=True)
        np.save(os.path.join(extra_dir, "item_embeddings.npy"), item_vectors)
        with open(os.path.join(extra_dir, "item_ids.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(item_ids) + "\n")
        with open(os.path.join(extra_dir, "sparktf.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, default=str)
        try:
            os.replace(staging, path)  # atomic; replaces only an empty folder
        except OSError as exc:
            raise ModelError(
                f"Cannot move the finished export {staging} to {path}: {exc}.",
                hint="Another export wrote this version meanwhile; export to a new version number.",
            ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


@dataclass(frozen=True, eq=False)
class ExportedModel:
    """A loaded export: the SavedModel's signature plus the item embeddings beside it."""

    path: str
    signature: Any
    item_ids: np.ndarray
    item_embeddings: np.ndarray
    meta: dict[str, Any]

    def __call__(self, user_id: list[str] | np.ndarray, history: list[list[str]]) -> dict[str, np.ndarray]:
        """Run ``serving_default`` on python/numpy inputs."""
        from sparktf.models.layers import tf

        width = max([len(h) for h in history] + [1])
        dense = np.array([[str(x) for x in h] + [""] * (width - len(h)) for h in history], dtype=object)
        out = self.signature(user_id=tf.constant([str(u) for u in user_id]), history=tf.constant(dense.astype(str)))
        return {key: value.numpy() for key, value in out.items()}


def load_exported(path: str) -> ExportedModel:
    """Load ``<base>/<version>/`` written by :func:`export_model`."""
    from sparktf.models.layers import tf

    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ModelError(f"No SavedModel at {path}.", hint="Pass the numbered version directory of an export.")
    loaded = tf.saved_model.load(path)
    extra = os.path.join(path, "assets.extra")
    with open(os.path.join(extra, "item_ids.txt"), encoding="utf-8") as fh:
        ids = np.asarray([line.rstrip("\n") for line in fh if line.rstrip("\n")], dtype=object)
    with open(os.path.join(extra, "sparktf.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    emb = np.load(os.path.join(extra, "item_embeddings.npy"))
    # Keep the loaded object alive with the signature.
    sig = loaded.signatures["serving_default"]
    sig._sparktf_owner = loaded
    return ExportedModel(path=path, signature=sig, item_ids=ids, item_embeddings=emb, meta=meta)
