"""A self-attention next-item model in the style of SASRec (Kang & McAuley, 2018).

The history (the last ``max_history`` items, oldest first) is embedded, scaled by
``sqrt(dim)`` and added to a learned position embedding (positions counted from the
window's first item, as SASRec's left-padded sequences count them from the end of
the padding); ``attention_blocks`` pre-norm blocks of causal multi-head attention
(``attention_heads`` heads, dropout) and a two-layer feed-forward net, each with a
residual connection, and a final layer norm follow. Padding is masked out of every
key, and a position attends only to itself and earlier positions, so the output at
position ``j`` is a summary of the first ``j + 1`` items alone.

**Training on every position.** The output at every position predicts the next item
of the window (the last one predicts the example's target), with the full softmax
over the catalogue or, for large catalogues, a sampled softmax (log-uniform sampler,
as the GRU uses). One window of ``L`` items so yields ``L`` training signals for the
cost of one forward pass, which is what makes SASRec cheaper per epoch than an RNN
trained on every prefix. The training rows are the examples the features stage marks
``window_end``: windows that tile each user's train part from its last step back, so
every train transition is a label exactly once per epoch (see data/features.py and
training/train_fn.py). Fed other rows (a test, or data without the column) the model
still trains correctly, only more slowly.

**Serving.** The query is the output at the history's last position; it is scored
against the output item table plus a per-item bias, folded into one extra dimension
exactly as the GRU model does, so the export's ``serving_default`` signature, the
query embedding, the ScaNN index, batch top-K and ``:recommend`` serve this model
unchanged. Validation and ``mask_history`` behave as in the GRU model: with the mask,
the items of the history up to each position (other than its label) are left out of
that position's softmax.

Why our own layers: TFRS has no sequential model beyond its GRU tutorial, and
Keras-RS's SASRec example needs Keras 3, which cannot ``fit`` under
MultiWorkerMirroredStrategy (see the stack notes in README.md); the block is a few
lines over ``keras.layers.MultiHeadAttention``.
"""

from __future__ import annotations

import math
from typing import Any

from sparktf.models.base import ModelParams
from sparktf.models.catalog import Catalog
from sparktf.models.layers import ITEM_OFFSET, item_lookup, keras, tf
from sparktf.models.sequential import SequentialRecommender

__all__ = ["SelfAttentionEncoder", "SelfAttentionRecommender"]


@keras.utils.register_keras_serializable(package="sparktf")
class SelfAttentionEncoder(keras.layers.Layer):
    """[B, L] right-padded item indices -> [B, L, dim], causal (position j sees 0..j)."""

    def __init__(
        self, embedding: Any, max_len: int, dim: int, blocks: int, heads: int, dropout: float, seed: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.embedding = embedding
        self.max_len = max_len
        self.dim = dim
        self.scale = math.sqrt(dim)
        init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
        self.position = keras.layers.Embedding(max_len, dim, embeddings_initializer=init, name="position_embedding")
        self.dropout = keras.layers.Dropout(dropout)
        self.blocks = []
        for b in range(blocks):
            self.blocks.append(
                {
                    "norm_attention": keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{b}_norm_attention"),
                    "attention": keras.layers.MultiHeadAttention(
                        num_heads=heads, key_dim=dim // heads, dropout=dropout, name=f"block{b}_attention"
                    ),
                    "norm_ffn": keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{b}_norm_ffn"),
                    "ffn_in": keras.layers.Dense(dim, activation="relu", name=f"block{b}_ffn_in"),
                    "ffn_out": keras.layers.Dense(dim, name=f"block{b}_ffn_out"),
                    "drop": keras.layers.Dropout(dropout),
                }
            )
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

    def call(self, indices: Any, training: bool | None = None) -> Any:
        length = tf.shape(indices)[1]
        keep = tf.not_equal(indices, 0)
        keep_f = tf.cast(keep, tf.float32)[:, :, None]
        x = self.embedding(indices) * self.scale + self.position(tf.range(length))[None]
        x = self.dropout(x, training=training) * keep_f
        causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
        mask = causal[None] & keep[:, None, :]  # [B, query, key]
        for block in self.blocks:
            h = block["norm_attention"](x)
            a = block["attention"](h, h, h, attention_mask=mask, training=training)
            x = x + block["drop"](a, training=training)
            h = block["norm_ffn"](x)
            f = block["ffn_out"](block["drop"](block["ffn_in"](h), training=training))
            x = (x + block["drop"](f, training=training)) * keep_f
        return self.final_norm(x)


class SelfAttentionRecommender(SequentialRecommender):
    """SASRec-style next-item model with full-catalogue scoring (see the module docstring)."""

    def __init__(self, catalog: Catalog, params: ModelParams, **kwargs: Any) -> None:
        # Skip the GRU model's layers: this model shares its scoring and validation only.
        super(SequentialRecommender, self).__init__(name="sasrec_recommender", **kwargs)
        self._init_catalog(catalog, params)
        num = catalog.num_items + ITEM_OFFSET
        dim = params.embedding_dim
        init = keras.initializers.RandomNormal(stddev=0.05, seed=params.seed)
        self.history_lookup = item_lookup(catalog.item_ids.tolist(), name="history_lookup")
        self.item_embedding = keras.layers.Embedding(num, dim, embeddings_initializer=init, name="item_embedding")
        self.encoder = SelfAttentionEncoder(
            self.item_embedding,
            params.max_history,
            dim,
            params.attention_blocks,
            params.attention_heads,
            params.dropout,
            params.seed,
            name="self_attention_encoder",
        )
        if params.tie_embeddings:
            self.output_embedding = self.item_embedding
        else:
            self.output_embedding = keras.layers.Embedding(
                num, dim, embeddings_initializer=init, name="output_embedding"
            )
        self.item_bias = self.add_weight(name="item_bias", shape=(num,), initializer="zeros", trainable=True)
        self._init_repeat(catalog, params)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hr10 = keras.metrics.Mean(name="hr_at_10")
        self.ndcg10 = keras.metrics.Mean(name="ndcg_at_10")

    def _query(self, features: dict[str, Any], training: bool) -> Any:
        indices = self.history_lookup(features["history"])
        out = self.encoder(indices, training=training)
        last = tf.maximum(tf.reduce_sum(tf.cast(tf.not_equal(indices, 0), tf.int32), axis=1) - 1, 0)
        return tf.gather(out, last, batch_dims=1)

    def _per_example_loss(self, features: dict[str, Any], training: bool) -> tuple[Any, Any, Any]:
        if not training:
            return super()._per_example_loss(features, training)
        indices = self.history_lookup(features["history"])
        length = tf.shape(indices)[1]
        hist = tf.cast(indices, tf.int32) - ITEM_OFFSET  # catalogue positions; padding -2, OOV -1
        count = tf.reduce_sum(tf.cast(tf.not_equal(indices, 0), tf.int32), axis=1)
        target = self.target_position(features["target"])
        following = tf.concat([hist[:, 1:], tf.fill([tf.shape(hist)[0], 1], -2)], axis=1)
        last = tf.equal(tf.range(length)[None, :], (count - 1)[:, None])
        labels = tf.where(last, target[:, None], following)  # [B, L]; < 0 = no label
        valid = tf.cast(labels >= 0, tf.float32)
        safe = tf.maximum(labels, 0)
        out = self.encoder(indices, training=True) * self.taste_weight  # [B, L, D]
        emb, bias = self._items()
        # The repeat term of position j counts the items at positions 0..j (its prefix).
        breaks = self._breaks(features["history"])
        prefix = self.repeat.prefix_terms(hist, breaks) if self.repeat is not None else None
        if self.params.softmax == "sampled":
            flat = tf.reshape(out, [-1, self.params.embedding_dim])
            weights = emb
            if self.repeat is not None and prefix is not None:
                flat = tf.concat([flat, tf.reshape(prefix, [-1, self.repeat.buckets])], axis=1)
                weights = tf.concat([emb, self.repeat.item_part()], axis=1)
            per_pos = tf.nn.sampled_softmax_loss(
                weights=weights,
                biases=bias,
                labels=tf.cast(tf.reshape(safe, [-1, 1]), tf.int64),
                inputs=flat,
                num_sampled=min(self.params.num_sampled, self.catalog.num_items - 1),
                num_classes=self.catalog.num_items,
                remove_accidental_hits=True,
                seed=self.params.seed,
            )
            per_pos = tf.reshape(per_pos, tf.shape(labels))
        else:
            logits = tf.einsum("bld,nd->bln", out, emb) + bias
            if self.repeat is not None and prefix is not None:
                logits += self.repeat.logits(prefix)
            if self.params.mask_history:
                logits = self._mask_prefix(logits, hist, safe)
            per_pos = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        # Each window weighs by its labelled positions, over a constant L: the mean over
        # the global batch (compute_average_loss) stays a per-position mean up to a factor.
        per_ex = tf.reduce_sum(per_pos * valid, axis=1) / tf.cast(length, tf.float32)
        counted = tf.reduce_sum(valid, axis=1) / tf.cast(length, tf.float32)
        return per_ex, counted, (None, None)

    def _mask_prefix(self, logits: Any, hist: Any, labels: Any) -> Any:
        """Leave out of position j's softmax the items at positions 0..j (but its label)."""
        seen = tf.cumsum(tf.one_hot(tf.maximum(hist, -1), self.catalog.num_items), axis=1) > 0  # OOV/pad: zeros
        seen &= ~tf.cast(tf.one_hot(labels, self.catalog.num_items), tf.bool)
        return tf.where(seen, tf.constant(-1e9, logits.dtype), logits)
