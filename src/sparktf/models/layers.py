"""Layers shared by both models: raw-id lookups and the history encoder.

Index layout of every item lookup: 0 = padding (the empty string), 1 =
out-of-vocabulary, 2..V+1 = the catalogue in vocabulary order. Catalogue
position ``i`` therefore has lookup index ``i + 2`` (:data:`ITEM_OFFSET`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparktf.tfenv import import_tensorflow

tf = import_tensorflow()
keras = tf.keras

__all__ = ["ITEM_OFFSET", "UNROLL_MAX_STEPS", "HistoryEncoder", "item_lookup", "pad_history", "string_lookup"]

ITEM_OFFSET = 2

#: Histories of at most this many steps run the GRU/LSTM unrolled: the history has a fixed
#: length (:func:`pad_history`), so the loop can be laid out as straight-line ops, which
#: saves the while-loop's per-step overhead. Measured on the GRU model's training step
#: (``python -m bench.bench_model_step``, BENCHMARKS.md, issue #22): at 20 steps (the
#: default ``features.max_history``) +8% and +7% in two runs; at 50 none (0.95x), so
#: longer histories keep the loop, whose graph and tracing time do not grow with the length.
UNROLL_MAX_STEPS = 20


def item_lookup(item_ids: Sequence[str], name: str = "item_lookup") -> Any:
    """StringLookup with "" as mask (index 0) and one OOV bucket (index 1)."""
    return keras.layers.StringLookup(vocabulary=[str(i) for i in item_ids], mask_token="", num_oov_indices=1, name=name)


def string_lookup(values: Sequence[str], name: str) -> Any:
    """StringLookup without a mask: 0 = OOV, 1.. = the values."""
    return keras.layers.StringLookup(vocabulary=[str(v) for v in values] or ["<none>"], num_oov_indices=1, name=name)


def pad_history(history: Any, max_len: int) -> Any:
    """Turn a ragged, sparse or dense string history into a dense [B, max_len] tensor:
    the last ``max_len`` items of each row, oldest first, right-padded with "".

    A fixed width keeps RNN shapes static and gives empty histories a (padding) step.
    """
    if isinstance(history, tf.SparseTensor):
        history = tf.sparse.to_dense(history, default_value="")
    if not isinstance(history, tf.RaggedTensor):
        history = tf.convert_to_tensor(history)
        if history.shape.rank == 1:
            history = tf.expand_dims(history, 1)
        history = tf.RaggedTensor.from_tensor(history, padding="")
    return history[:, -max_len:].to_tensor(default_value="", shape=[None, max_len])


@keras.utils.register_keras_serializable(package="sparktf")
class HistoryEncoder(keras.layers.Layer):  # type: ignore[name-defined]
    """Encodes a right-padded [B, N] tensor of item indices into [B, dim].

    Args:
        embedding: the item embedding layer (shared with the output side when tied).
        kind: "gru", "lstm" or "mean" (masked mean pooling).
        dim: output size.
        dropout: dropout on the item embeddings.
        steps: the history's fixed length; up to :data:`UNROLL_MAX_STEPS` the recurrence is
            unrolled (the same computation, laid out step by step). None: not unrolled.
    """

    def __init__(
        self, embedding: Any, kind: str, dim: int, dropout: float = 0.0, steps: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.embedding = embedding
        self.kind = kind
        self.dim = dim
        self.dropout = keras.layers.Dropout(dropout)
        unroll = steps is not None and steps <= UNROLL_MAX_STEPS
        if kind == "gru":
            self.rnn = keras.layers.GRU(dim, unroll=unroll)
        elif kind == "lstm":
            self.rnn = keras.layers.LSTM(dim, unroll=unroll)
        elif kind == "mean":
            self.rnn = None
            self.project = keras.layers.Dense(dim)
        else:
            raise ValueError(f"unknown history encoder {kind!r}")

    def call(self, indices: Any, training: bool | None = None) -> Any:
        mask = tf.not_equal(indices, 0)
        emb = self.dropout(self.embedding(indices), training=training)
        if self.rnn is not None:
            # An all-padding row (no history) would make the RNN's mask empty; feed it the
            # OOV index instead so cold-start rows still get a (learned) state.
            has_any = tf.reduce_any(mask, axis=1, keepdims=True)
            first = tf.logical_and(tf.logical_not(has_any), tf.equal(tf.range(tf.shape(indices)[1]), 0)[None, :])
            mask = tf.logical_or(mask, first)
            return self.rnn(emb, mask=mask, training=training)
        weights = tf.cast(mask, emb.dtype)[:, :, None]
        pooled = tf.reduce_sum(emb * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        return self.project(pooled)
