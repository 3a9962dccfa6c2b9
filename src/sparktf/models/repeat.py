"""The repeat term: a learned weight on "the user already had this item", inside the dot product.

Whether a shopper comes back to an item is the first thing that separates data sets:
nobody rates a movie twice, while most of a grocery basket was bought before. A model
whose score is only ``query · item`` can express "not what you had" or "again what you
had" only approximately, through the geometry of its embeddings, and on MovieLens-100K
that costs a lot: with seen items excluded after the fact the GRU scored HR@10 0.209,
without the exclusion 0.125. The repeat term lets the model *learn* it instead (as
repeat-aware recommenders such as RepeatNet do): the score of item ``i`` gains
``f(c_i) = seen * min(c_i, 1) + often * log(1 + c_i)``, where ``c_i`` is how many times the
history holds ``i`` and ``seen`` and ``often`` are two trained scalars. On MovieLens it
learns a large negative ``f(1)`` (the ``repeat_beta`` the training logs show), on grocery
orders a positive one that grows with the count; nothing is excluded by a rule. Why both
terms: a count alone (``f(c) = beta * c``) must pick one slope for "had it once" and for
"had it ten times"; on Instacart it settled at 0.56 per purchase and ranked below counting.

Buckets (``train.repeat_buckets`` = ``D``): the ``D`` most popular items (catalogue positions
are ordered by popularity) have a bucket each, so their counts are exact; rarer items
have none and no repeat term. Why not hash every item into ``D`` buckets: a shared
bucket gives every item in it the count of the one the user had. On the Instacart
sample (14,109 products) with ``i mod 1024`` each history item lent its count to 13 others,
and the model learnt to trust the term little (validation NDCG@10 0.08 where counting
the history's items gives 0.12). The top 2,048 products hold 187 of the 291 test targets
that repeat an item of the user's history there, the top 4,096 hold 240.

Recency (``train.repeat_recent`` = ``W``): a learned weight ``w_k`` for the item ``k`` steps
before the end of the history, ``k < W``, added to that item's term. Why: a shopper buys a
product once per basket, so the items just added to the basket in progress are the
least likely next ones, which a count alone ranks high. Measured on the Instacart sample
with counting (``repeat_frequent``) as the scorer: the last 3 items pushed down gave
validation / test NDCG@10 0.1285 / 0.1071 against 0.1219 / 0.0997; every item of the
current order left out (which needs order boundaries, not in the history) 0.166 / 0.135.
The weights are learnt, so where nobody repeats, or repeats what they just had, the
model learns that instead. In SASRec on Instacart (``W = 8``) the last step's weight
ends at -4.95 and test NDCG@10 moves 0.0910 -> 0.0936, still below counting's
0.0998 (validation 0.1268 against 0.1219; BENCHMARKS.md, issue #20).

Session (``features.session_breaks``): a learned weight ``s`` added to the term of every
item of the session in progress (the history's entries after its last
:data:`~sparktf.data.schema.SESSION_BREAK`). Why: the recency weights reach back a fixed
``W`` steps, an order a varying number; what the basket already holds is the least
likely next item whatever its length. The break is no item (a position below 0 here);
with prefixes (SASRec's training) position ``j`` counts the items since the last break
at or before ``j``. Measured on the Instacart sample (SASRec, orders as sessions): the
weight ends near -5.3 and test NDCG@10 moves 0.1031 -> 0.1285 (repeat_frequent 0.0998,
paired difference +0.029 +- 0.007; BENCHMARKS.md, issue #20).

It stays a dot product, so the ANN index, batch top-K and ``:recommend`` serve it as they
serve the rest of the model: the item vector gains the one-hot of its bucket and the
query vector gains ``f`` of the history's bucket counts (``buckets`` more dimensions each):
``f`` acts on each count alone (and the recency weights on each bucket's own positions),
so the dot product gives ``f(c_i)`` exactly. The logits used
in training add ``f(counts)`` directly (not a matmul with the one-hot table).
"""

from __future__ import annotations

from typing import Any

from sparktf.models.layers import keras, tf

__all__ = ["BETA_SCALE", "RepeatTerm"]

#: ``seen`` and ``often`` are ``BETA_SCALE`` times their trained variables. Adam moves a
#: variable by about the learning rate per step whatever its gradient, and these must travel
#: much further than an embedding entry: unscaled, the weight had only reached -1.2 after 500
#: steps on ML-100K (lr 0.002).
BETA_SCALE = 10.0


@keras.utils.register_keras_serializable(package="sparktf")
class RepeatTerm(keras.layers.Layer):
    """``f(count of the item in the history)`` for every catalogue item (module docstring).

    Args:
        num_items: catalogue size ``N`` (positions ``0..N-1``).
        buckets: ``D``, the number of buckets (``train.repeat_buckets``, > 0).
        recent: ``W``, how many of the last history steps get a recency weight each
            (``train.repeat_recent``; 0: none).
        session: learn a weight for the items of the session in progress (the histories
            hold session breaks, ``features.session_breaks``).
    """

    def __init__(self, num_items: int, buckets: int, recent: int = 0, session: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if buckets < 1:
            raise ValueError(f"repeat buckets must be positive, got {buckets}")
        if recent < 0:
            raise ValueError(f"repeat recent must be 0 or more, got {recent}")
        self.num_items = int(num_items)
        self.buckets = int(buckets)
        self.recent = int(recent)
        self.session = bool(session)
        self.seen_weight = self.add_weight(name="repeat_seen", shape=(), initializer="zeros", trainable=True)
        self.often_weight = self.add_weight(name="repeat_often", shape=(), initializer="zeros", trainable=True)
        self.recent_weights = (
            self.add_weight(name="repeat_recent", shape=(self.recent,), initializer="zeros", trainable=True)
            if self.recent
            else None
        )
        self.session_weight = (
            self.add_weight(name="repeat_session", shape=(), initializer="zeros", trainable=True)
            if self.session
            else None
        )

    def value(self, counts: Any) -> Any:
        """``f(counts)``, elementwise."""
        seen, often = BETA_SCALE * self.seen_weight, BETA_SCALE * self.often_weight
        return seen * tf.minimum(counts, 1.0) + often * tf.math.log1p(counts)

    @property
    def beta(self) -> Any:
        """``f(1)``: what having had an item once adds to its score (a tensor)."""
        return self.value(tf.constant(1.0))

    def _bucket(self, positions: Any) -> Any:
        """Catalogue positions -> buckets: the position itself below ``D``, else -1 (none)."""
        return tf.where((positions >= 0) & (positions < self.buckets), positions, -1)

    def item_buckets(self) -> Any:
        """[N] int32: each catalogue position's bucket (-1: none)."""
        return self._bucket(tf.range(self.num_items, dtype=tf.int32))

    def _one_hot(self, positions: Any) -> Any:
        """[..., L] catalogue positions (< 0: padding or unknown) -> [..., L, D] one-hots (zeros: no bucket)."""
        return tf.one_hot(self._bucket(positions), self.buckets, dtype=tf.float32)

    def counts(self, positions: Any) -> Any:
        """[B, L] history positions -> [B, D] bucket counts of the whole history."""
        return tf.reduce_sum(self._one_hot(positions), axis=-2)

    def terms(self, positions: Any, breaks: Any = None) -> Any:
        """[B, L] right-padded history positions (padding -2, unknown -1 and session breaks
        below 0) -> [B, D]: the term of each bucket after the whole history (the query
        vector's extra dimensions). ``breaks``: [B, L] bool, where the session breaks are
        (needed when ``session``)."""
        length = tf.reduce_sum(tf.cast(positions > -2, tf.int32), axis=1)  # unknown items are steps too
        out = self.value(self.counts(positions))
        if self.recent_weights is not None:
            out += self._recent_end(positions, length, self.recent_weights)
        if self.session_weight is not None:
            # After the last break: no break at a later position.
            current = tf.cumsum(tf.cast(self._need(breaks), tf.int32), axis=1, reverse=True, exclusive=True) == 0
            held = tf.minimum(self.counts(tf.where(current, positions, -1)), 1.0)
            out += BETA_SCALE * self.session_weight * held
        return out

    def _need(self, breaks: Any) -> Any:
        if breaks is None:
            raise ValueError("this repeat term weighs the session in progress: pass where the session breaks are")
        return breaks

    def _recent_end(self, positions: Any, length: Any, recent_weights: Any) -> Any:
        """[B, D]: the recency weights of the last ``W`` steps of each history of ``length`` steps."""
        back = length[:, None] - 1 - tf.range(self.recent)[None, :]  # [B, W]: the k-th step from the end
        last = tf.where(back >= 0, tf.gather(positions, tf.maximum(back, 0), batch_dims=1), -1)
        weights = BETA_SCALE * recent_weights
        return tf.einsum("bwd,w->bd", self._one_hot(last), weights)

    def prefix_terms(self, positions: Any, breaks: Any = None) -> Any:
        """[B, L] history positions -> [B, L, D]: at ``j``, the terms after positions ``0..j``."""
        hot = self._one_hot(positions)
        cum = tf.cumsum(hot, axis=-2)
        out = self.value(cum)
        if self.session_weight is not None:
            # The items since the last break at or before j: the counts at j less those at that break.
            shape = tf.shape(positions)
            at = tf.where(self._need(breaks), tf.range(shape[1])[None, :], -1)  # [B, L]
            causal = tf.linalg.band_part(tf.ones([shape[1], shape[1]], tf.bool), -1, 0)  # [j, i]: i <= j
            last = tf.reduce_max(tf.where(causal[None], at[:, None, :], -1), axis=-1)  # [B, L]
            base = tf.gather(cum, tf.maximum(last, 0), batch_dims=1) * tf.cast(last >= 0, tf.float32)[..., None]
            out += BETA_SCALE * self.session_weight * tf.minimum(cum - base, 1.0)
        if self.recent_weights is None:
            return out
        # Sparse: B * L * W additions into the [B, L, D] terms. W dense shifted copies of the
        # one-hots took 49-55 s an epoch on Instacart (W = 8, D = 4,096) against 38-47 s for
        # this, with identical validation metrics (two runs, neither on an idle machine).
        shape = tf.shape(positions)
        back = tf.range(shape[1])[:, None] - tf.range(self.recent)[None, :]  # [L, W]: position j - k
        rows = tf.broadcast_to(tf.range(shape[0])[:, None, None], [shape[0], shape[1], self.recent])
        cols = tf.broadcast_to(tf.range(shape[1])[None, :, None], [shape[0], shape[1], self.recent])
        items = tf.where(back[None] >= 0, tf.gather(positions, tf.maximum(back, 0), axis=1), -1)  # [B, L, W]
        bucket = self._bucket(items)
        keep = bucket >= 0
        where = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(cols, keep), tf.boolean_mask(bucket, keep)], 1)
        weights = BETA_SCALE * self.recent_weights
        lags = tf.broadcast_to(tf.range(self.recent)[None, None, :], tf.shape(items))
        return tf.tensor_scatter_nd_add(out, where, tf.gather(weights, tf.boolean_mask(lags, keep)))

    def logits(self, terms: Any) -> Any:
        """[..., D] terms -> [..., N]: the term added to every item's logit (0 without a bucket)."""
        if self.buckets >= self.num_items:
            return terms[..., : self.num_items]
        rest = tf.zeros(tf.concat([tf.shape(terms)[:-1], [self.num_items - self.buckets]], axis=0))
        return tf.concat([terms, rest], axis=-1)

    def item_part(self) -> Any:
        """[N, D]: the item vectors' extra dimensions (one-hot of the bucket)."""
        return tf.one_hot(self.item_buckets(), self.buckets, dtype=tf.float32)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "buckets": self.buckets,
            "recent": self.recent,
            "session": self.session,
        }
