"""The sequential next-item model: a GRU or LSTM over the user's recent items.

The recurrent state of the previous ``max_history`` items, projected, is the
query; it is scored against an output item embedding table (separate from the
input embeddings unless ``tie_embeddings``: "B follows A" does not mean "A
follows B", and a separate table scored higher on the synthetic data)
plus a per-item bias, with a full softmax over the catalogue or a sampled softmax
(log-uniform sampler, which matches the frequency-ordered vocabulary) for large
catalogues. With ``mask_history`` (default) the full softmax leaves the history's
items out, so the model learns to rank what recommendations can show: the items
not seen yet. The bias is folded into the vectors as an extra dimension so the
same ANN index serves this model; so is the optional repeat term
(``repeat_buckets``, :mod:`sparktf.models.repeat`), a learned weight on the items the
history already holds.

**The taste weight.** With a repeat term the score is two parts, the taste
``query · item`` and the repeat term (plus the item bias). Both are learnt together on
the training positions, where the taste part has seen (and memorised) each shopper's own
items as targets; on held-out positions it is too confident when it ranks the items the
shopper already had, and it outvotes the repeat term. Measured on the Instacart sample
(SASRec, two trainings): scaling the taste part by 0.5-0.625 at scoring time lifted test
NDCG@10 from 0.0936 to 0.1040 and from 0.0950 to 0.1039, while validation moved only
0.1268 -> 0.1310 and 0.1286 -> 0.1317 (BENCHMARKS.md, issue #20). With
``train.calibrate_taste`` the training picks that factor after ``fit``: it scores the
validation split with the taste part times each weight of :data:`TASTE_GRID` and keeps
the best NDCG@10 (:meth:`SequentialRecommender.calibrate_taste`). The factor is the
model's ``taste_weight`` variable (1 until then), applied to the query's taste part, so
the export, the ANN index, batch top-K and ``:recommend`` all serve the calibrated score.
Weights above 1 are not tried: the failure measured is over-confidence, and a larger
taste part is what training already had every chance to learn.
"""

from __future__ import annotations

from typing import Any

from sparktf.data.schema import SESSION_BREAK
from sparktf.models.base import ModelParams, RecommenderMixin, logit_ranks, ranking_metrics
from sparktf.models.catalog import Catalog
from sparktf.models.layers import ITEM_OFFSET, HistoryEncoder, item_lookup, keras, tf
from sparktf.models.repeat import BETA_SCALE, RepeatTerm

__all__ = ["TASTE_GRID", "SequentialRecommender"]

#: The taste weights :meth:`SequentialRecommender.calibrate_taste` tries (module docstring).
TASTE_GRID: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


class SequentialRecommender(RecommenderMixin, keras.Model):
    """GRU4Rec-style next-item model with full-catalogue scoring."""

    def __init__(self, catalog: Catalog, params: ModelParams, **kwargs: Any) -> None:
        super().__init__(name="sequential_recommender", **kwargs)
        self._init_catalog(catalog, params)
        num = catalog.num_items + ITEM_OFFSET
        dim = params.embedding_dim
        init = keras.initializers.RandomNormal(stddev=0.05, seed=params.seed)
        self.history_lookup = item_lookup(catalog.item_ids.tolist(), name="history_lookup")
        self.item_embedding = keras.layers.Embedding(num, dim, embeddings_initializer=init, name="item_embedding")
        self.encoder = HistoryEncoder(
            self.item_embedding, params.rnn, dim, params.dropout, steps=params.max_history, name="history_encoder"
        )
        if params.tie_embeddings:
            self.output_embedding = self.item_embedding
        else:
            self.output_embedding = keras.layers.Embedding(
                num, dim, embeddings_initializer=init, name="output_embedding"
            )
        self.query_head = keras.layers.Dense(dim, name="query_head")
        self.item_bias = self.add_weight(name="item_bias", shape=(num,), initializer="zeros", trainable=True)
        self._init_repeat(catalog, params)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hr10 = keras.metrics.Mean(name="hr_at_10")
        self.ndcg10 = keras.metrics.Mean(name="ndcg_at_10")

    # ----------------------------------------------------------------- scoring

    def _init_repeat(self, catalog: Catalog, params: ModelParams) -> None:
        self.repeat = (
            RepeatTerm(
                catalog.num_items,
                params.repeat_buckets,
                params.repeat_recent,
                session=params.session_breaks,
                name="repeat_term",
            )
            if params.repeat_buckets > 0
            else None
        )
        # What the taste part (query . item) is multiplied by; 1 until calibrate_taste (module docstring).
        self.taste_weight = self.add_weight(name="taste_weight", shape=(), initializer="ones", trainable=False)

    def _positions(self, history: Any) -> Any:
        """[B, L] history ids -> catalogue positions (padding and unknown items < 0)."""
        return tf.cast(self.history_lookup(history), tf.int32) - ITEM_OFFSET

    def _breaks(self, history: Any) -> Any:
        """[B, L] bool: where the history holds a session break (None unless the repeat term weighs sessions)."""
        if self.repeat is None or not self.repeat.session:
            return None
        return tf.equal(history, SESSION_BREAK)

    def _repeat_terms(self, features: dict[str, Any]) -> Any:
        """[B, D] repeat term of the whole history (the repeat term must exist)."""
        assert self.repeat is not None
        history = features["history"]
        return self.repeat.terms(self._positions(history), self._breaks(history))

    def _repeat_logits(self, features: dict[str, Any]) -> Any:
        """[B, N] repeat term of the whole history, or 0 without one."""
        if self.repeat is None:
            return 0.0
        return self.repeat.logits(self._repeat_terms(features))

    def _query(self, features: dict[str, Any], training: bool) -> Any:
        indices = self.history_lookup(features["history"])
        return self.query_head(self.encoder(indices, training=training))

    def _taste_query(self, features: dict[str, Any], training: bool) -> Any:
        """The query's taste part, times the taste weight (module docstring)."""
        return self._query(features, training) * self.taste_weight

    def _items(self) -> tuple[Any, Any]:
        if not self.output_embedding.built:
            self.output_embedding.build((None,))
        return self.output_embedding.embeddings[ITEM_OFFSET:], self.item_bias[ITEM_OFFSET:]

    def query_vectors(self, features: dict[str, Any], training: bool = False) -> Any:
        q = self._taste_query(features, training)
        parts = [q, tf.ones_like(q[:, :1])]
        if self.repeat is not None:
            parts.append(self._repeat_terms(features))
        return tf.concat(parts, axis=1)

    def item_vectors(self) -> Any:
        emb, bias = self._items()
        parts = [emb, bias[:, None]]
        if self.repeat is not None:
            parts.append(self.repeat.item_part())
        return tf.concat(parts, axis=1)

    def call(self, features: dict[str, Any], training: bool | None = None) -> Any:
        features = self.prepare(features)
        q = self._taste_query(features, bool(training))
        emb, bias = self._items()
        return tf.matmul(q, emb, transpose_b=True) + bias + self._repeat_logits(features)

    # ----------------------------------------------------------------- training

    def _per_example_loss(self, features: dict[str, Any], training: bool) -> tuple[Any, Any, Any]:
        q = self._taste_query(features, training)
        labels = self.target_position(features["target"])
        valid = tf.cast(labels >= 0, tf.float32)
        safe = tf.maximum(labels, 0)
        emb, bias = self._items()
        if training and self.params.softmax == "sampled":
            weights, inputs = emb, q
            if self.repeat is not None:
                # The repeat term as the dot product it is in the export (one-hot buckets).
                terms = self._repeat_terms(features)
                weights = tf.concat([emb, self.repeat.item_part()], axis=1)
                inputs = tf.concat([q, terms], axis=1)
            per_ex = tf.nn.sampled_softmax_loss(
                weights=weights,
                biases=bias,
                labels=tf.cast(safe[:, None], tf.int64),
                inputs=inputs,
                num_sampled=min(self.params.num_sampled, self.catalog.num_items - 1),
                num_classes=self.catalog.num_items,
                remove_accidental_hits=True,
                seed=self.params.seed,
            )
            logits = None
        else:
            logits = tf.matmul(q, emb, transpose_b=True) + bias + self._repeat_logits(features)
            if self.params.mask_history:
                logits = self._mask_history(logits, features["history"], safe)
            per_ex = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        return per_ex * valid, valid, (logits, safe)

    def _mask_history(self, logits: Any, history: Any, target: Any) -> Any:
        """Leave the history's items (other than the target) out of the softmax.

        Recommendations exclude what the user has already seen (evaluation, batch
        top-K and serving all do), so the model is trained to rank the rest; left in,
        repeats of history items dominate what it learns of the user's tastes.
        """
        pos = tf.cast(self.history_lookup(history), tf.int32) - ITEM_OFFSET  # padding/OOV < 0
        rows = tf.broadcast_to(tf.range(tf.shape(pos)[0])[:, None], tf.shape(pos))
        keep = (pos >= 0) & (pos != target[:, None])
        idx = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(pos, keep)], axis=1)
        seen = tf.scatter_nd(idx, tf.ones(tf.shape(idx)[0], tf.bool), tf.shape(logits))
        return tf.where(seen, tf.constant(-1e9, logits.dtype), logits)

    def train_step(self, data: Any) -> dict[str, Any]:
        features = self.prepare(data)
        with tf.GradientTape() as tape:
            per_ex, valid, _ = self._per_example_loss(features, training=True)
            # Mean over the *global* batch: gradients are summed across replicas.
            loss = tf.nn.compute_average_loss(per_ex)
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(
            tf.reduce_sum(per_ex) / tf.maximum(tf.reduce_sum(valid), 1.0), tf.reduce_sum(valid)
        )
        logs = {"loss": self.loss_tracker.result()}
        if self.repeat is not None:
            # The learned weight on "already had it": negative where nobody repeats.
            logs["repeat_beta"] = tf.identity(self.repeat.beta)
            if self.repeat.recent_weights is not None:
                # What being the history's last step adds (negative: a basket holds a product once).
                logs["repeat_last"] = BETA_SCALE * self.repeat.recent_weights[0]
            if self.repeat.session_weight is not None:
                # What being in the session in progress adds (negative: already in the basket).
                logs["repeat_session"] = BETA_SCALE * self.repeat.session_weight
        return logs

    def test_step(self, data: Any) -> dict[str, Any]:
        features = self.prepare(data)
        per_ex, valid, (logits, labels) = self._per_example_loss(features, training=False)
        self.loss_tracker.update_state(
            tf.reduce_sum(per_ex) / tf.maximum(tf.reduce_sum(valid), 1.0), tf.reduce_sum(valid)
        )
        hit, ndcg = ranking_metrics(logit_ranks(logits, labels), valid)
        count = tf.reduce_sum(valid)
        self.hr10.update_state(tf.reduce_sum(hit) / tf.maximum(count, 1.0), count)
        self.ndcg10.update_state(tf.reduce_sum(ndcg) / tf.maximum(count, 1.0), count)
        return {"loss": self.loss_tracker.result(), "hr_at_10": self.hr10.result(), "ndcg_at_10": self.ndcg10.result()}

    def calibrate_taste(self, dataset: Any, grid: tuple[float, ...] = TASTE_GRID) -> tuple[float, dict[float, float]]:
        """Set ``taste_weight`` to the weight of ``grid`` with the best NDCG@10 on ``dataset``.

        ``dataset`` yields batches of raw examples (the validation split). Each query is
        ranked over the whole catalogue as :meth:`test_step` ranks it (ties against the
        target, the history masked when ``mask_history``), with the taste part times each
        weight; out-of-vocabulary targets are left out, as validation leaves them out. A
        tie goes to the larger weight (the model as trained, when nothing beats it).

        Returns:
            ``(weight, {weight: NDCG@10})``.
        """
        self.taste_weight.assign(1.0)
        emb, bias = self._items()
        sums = [0.0] * len(grid)
        count = 0.0
        for batch in dataset:
            features = self.prepare(batch)
            labels = self.target_position(features["target"])
            valid = tf.cast(labels >= 0, tf.float32)
            safe = tf.maximum(labels, 0)
            taste = tf.matmul(self._query(features, False), emb, transpose_b=True)
            rest = bias + self._repeat_logits(features) + tf.zeros_like(taste)
            if self.params.mask_history:
                # Once per batch: a masked item stays ~-1e9 below the target at every weight.
                rest = self._mask_history(rest, features["history"], safe)
            for i, w in enumerate(grid):
                _, ndcg = ranking_metrics(logit_ranks(w * taste + rest, safe), valid)
                sums[i] += float(tf.reduce_sum(ndcg))
            count += float(tf.reduce_sum(valid))
        scores = {w: s / max(count, 1.0) for w, s in zip(grid, sums, strict=True)}
        best = max(grid, key=lambda w: (scores[w], w))
        self.taste_weight.assign(best)
        return best, scores

    @property
    def metrics(self) -> list[Any]:
        return [self.loss_tracker, self.hr10, self.ndcg10]
