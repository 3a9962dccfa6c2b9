"""What every sparktf recommender offers, whatever its architecture.

A model scores a query against the whole catalogue by one dot product:
``score(query, item) = query_vectors(query) · item_vectors()[item]``. Biases are
folded into an extra dimension, so an approximate-nearest-neighbour index over
:meth:`item_vectors` with inner-product distance ranks exactly as the model does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sparktf.models.catalog import Catalog
from sparktf.models.layers import ITEM_OFFSET, item_lookup, keras, pad_history, tf

__all__ = [
    "QUERY_FEATURES",
    "TARGET_FEATURES",
    "ModelParams",
    "RecommenderMixin",
    "catalogue_hits",
    "catalogue_ranks",
    "logit_ranks",
    "ranking_metrics",
]

QUERY_FEATURES = ("user_id", "history")
TARGET_FEATURES = ("target", "target_category", "target_brand", "target_price_bucket")


@dataclass(frozen=True)
class ModelParams:
    """Architecture and loss settings shared by both models (from ``[train]``)."""

    kind: Literal["sequential", "sasrec", "two_tower"] = "sequential"
    embedding_dim: int = 64
    rnn: Literal["gru", "lstm"] = "gru"
    max_history: int = 20
    dropout: float = 0.3
    softmax: Literal["full", "sampled"] = "full"
    num_sampled: int = 1000
    tie_embeddings: bool = False
    two_tower_user_id: bool = False
    mask_history: bool = True
    two_tower_history: Literal["gru", "lstm", "mean"] = "gru"
    temperature: float = 0.05
    attention_blocks: int = 2
    attention_heads: int = 1
    repeat_buckets: int = 0
    repeat_recent: int = 0
    session_breaks: bool = False
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RecommenderMixin:
    """Shared plumbing: raw-id handling, the catalogue tensors and full-catalogue scoring."""

    params: ModelParams
    catalog: Catalog

    def _init_catalog(self, catalog: Catalog, params: ModelParams) -> None:
        self.params = params
        self.catalog = catalog
        # train_step returns metric results, which are already global (sync-on-read);
        # tf-keras's default "auto" = "sum" would add them up once more per worker
        # under MultiWorkerMirroredStrategy (a 2-worker run logged twice the loss).
        self.distribute_reduction_method = "first"
        self.target_lookup = item_lookup(catalog.item_ids.tolist(), name="target_lookup")

    def prepare(self, features: dict[str, Any]) -> dict[str, Any]:
        """Normalise raw feature tensors: dense right-padded history, 1-D ids."""
        out = dict(features)
        if "history" in out:
            out["history"] = pad_history(out["history"], self.params.max_history)
        for key in ("user_id", *TARGET_FEATURES):
            if key in out:
                value = out[key]
                if isinstance(value, tf.SparseTensor):
                    value = tf.sparse.to_dense(value)
                value = tf.convert_to_tensor(value)
                if value.shape.rank == 2:
                    value = value[:, 0]
                out[key] = value
        return out

    def target_position(self, target: Any) -> Any:
        """Catalogue position of each raw target id, or -1 when it is out of vocabulary."""
        return tf.cast(self.target_lookup(target), tf.int32) - ITEM_OFFSET

    def query_vectors(self, features: dict[str, Any], training: bool = False) -> Any:
        raise NotImplementedError

    def item_vectors(self) -> Any:
        raise NotImplementedError

    def ensure_built(self) -> None:
        """Create every variable and mark the model built, by calling it on one empty query.

        Call it before ``fit`` (inside the strategy's scope, on every worker): tf-keras's
        ``BackupAndRestore`` restores a backup into the variables that exist when
        training begins, and an unbuilt model's variables would only be created, and
        restored, inside the first traced training step, which fails ("You must feed a
        value for placeholder tensor"). Export needs the variables too. The query is
        raw ids, like every input of these models, so no data or element spec is needed.
        """
        if not getattr(self, "built", False):
            self({"user_id": tf.constant([""]), "history": tf.constant([[""]])}, training=False)  # type: ignore[operator]

    def scores(self, features: dict[str, Any]) -> Any:
        """[B, num_items] scores of every catalogue item for each query."""
        q = self.query_vectors(self.prepare(features), training=False)
        return tf.matmul(q, self.item_vectors(), transpose_b=True)

    def score_numpy(self, user_id: np.ndarray, history: list[list[str]]) -> np.ndarray:
        """Scores for a batch given as numpy/python values (used by evaluation)."""
        flat = [str(x) for h in history for x in h]
        lengths = [len(h) for h in history]
        ragged = tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype=tf.string), tf.constant(lengths, tf.int64))
        feats = {"user_id": tf.constant([str(u) for u in user_id]), "history": ragged}
        return np.asarray(self.scores(feats))


def catalogue_hits(query: Any, items: Any, target: Any, k: int = 10, chunk: int = 65_536, exclude: Any = None) -> Any:
    """1.0 where the target is in the query's top ``k`` over the whole catalogue, else 0.0
    (see :func:`catalogue_ranks`)."""
    ranks = catalogue_ranks(query, items, target, chunk=chunk, exclude=exclude)
    return tf.cast(ranks < k, tf.float32)


def ranking_metrics(ranks: Any, valid: Any, k: int = 10) -> tuple[Any, Any]:
    """``(hit@k, ndcg@k)`` per query from 0-based ranks (the evaluation's definitions,
    :mod:`sparktf.evaluation.metrics`: one relevant item, gain ``1 / log2(rank + 2)``),
    0 where ``valid`` is 0. Validation reports both, so early stopping and tuning
    (which prunes on NDCG@10) see what evaluation measures."""
    top = tf.cast(ranks < k, tf.float32) * valid
    gain = 1.0 / (tf.math.log(tf.cast(ranks, tf.float32) + 2.0) / tf.math.log(2.0))
    return top, top * gain


def logit_ranks(logits: Any, labels: Any) -> Any:
    """0-based rank of each row's label among its logits; ties count against the label."""
    own = tf.gather(logits, tf.maximum(labels, 0), batch_dims=1)
    return tf.reduce_sum(tf.cast(logits >= own[:, None], tf.int32), axis=1) - 1


def catalogue_ranks(query: Any, items: Any, target: Any, chunk: int = 65_536, exclude: Any = None) -> Any:
    """0-based rank of the target among the whole catalogue for each query
    (``2**31 - 1`` when the target is out of vocabulary).

    ``query`` [B, D], ``items`` [N, D] (the catalogue, in the models' scoring space),
    ``target`` [B] catalogue positions (-1 = out of vocabulary, a miss); ``exclude``
    [B, H] positions left out of each query's ranking (-1 = none; the target never
    is), as evaluation leaves out the history. The catalogue is scored ``chunk``
    items at a time, so a validation batch never holds a [B, N] score matrix of a
    million-item catalogue; ties count against the target.
    """
    safe = tf.maximum(target, 0)
    own = tf.reduce_sum(query * tf.gather(items, safe), axis=1, keepdims=True)
    n = tf.shape(items)[0]
    starts = tf.range(0, n, chunk)

    def above(start: Any) -> Any:
        end = tf.minimum(start + chunk, n)
        better = tf.matmul(query, items[start:end], transpose_b=True) >= own
        # The target's column is left out by position: its score from matmul may round
        # differently from ``own``.
        other = tf.not_equal(tf.range(start, end)[None, :], safe[:, None])
        return tf.reduce_sum(tf.cast(better & other, tf.int32), axis=1)

    counts = tf.reduce_sum(tf.map_fn(above, starts, fn_output_signature=tf.int32), axis=0)
    if exclude is not None:
        # Take back the excluded items that were counted: each distinct one that beat the target.
        ex = tf.cast(exclude, tf.int32)
        h = tf.shape(ex)[1]
        earlier = tf.linalg.band_part(tf.ones([h, h], tf.bool), -1, 0) & ~tf.eye(h, dtype=tf.bool)
        repeat = tf.reduce_any(tf.equal(ex[:, :, None], ex[:, None, :]) & earlier[None], axis=2)
        scored = tf.reduce_sum(query[:, None, :] * tf.gather(items, tf.maximum(ex, 0)), axis=2)
        counted = (ex >= 0) & (ex != safe[:, None]) & ~repeat & (scored >= own)
        counts -= tf.reduce_sum(tf.cast(counted, tf.int32), axis=1)
    return tf.where(target >= 0, counts, tf.int32.max)


#: Variable-name parts :func:`make_optimizer` leaves out of weight decay: biases, layer
#: norms' scales and offsets, and the repeat term's weights (models/repeat.py), which must
#: travel far from zero (its ``BETA_SCALE``) and are a handful of numbers that cannot memorise.
NO_DECAY: tuple[str, ...] = ("bias", "gamma", "beta", "repeat_")


def make_optimizer(learning_rate: float, decay: float, steps_per_epoch: int, *, weight_decay: float = 0.0) -> Any:
    """Adam with a per-epoch exponential learning-rate schedule; with ``weight_decay`` > 0,
    AdamW (decoupled weight decay on every variable whose name holds none of :data:`NO_DECAY`).

    Why decoupled decay rather than an L2 loss: under Adam an L2 gradient is rescaled by the
    same per-variable normaliser as the data's gradient, so a rarely bought product's row,
    whose gradients are rare and small, would barely shrink, and those rows are the ones
    that memorise a single shopper (BENCHMARKS.md, issue #20).
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=max(1, steps_per_epoch), decay_rate=decay, staircase=True
    )
    if weight_decay <= 0.0:
        return keras.optimizers.Adam(learning_rate=schedule)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer
