"""Baselines, fitted on the train split and evaluated exactly like the models.

Three recommenders, each a :class:`Baseline` whose :meth:`~Baseline.score`
returns scores over the whole catalogue, so :func:`~sparktf.evaluation.evalset.evaluate_scores`
ranks them under the same protocol as a neural model:

* ``most_popular``: the train-part interaction count of each item.
* ``item_cooccurrence``: last-item Markov chain. ``P(next | last)`` is counted from
  the consecutive pairs of the train sequences (``history[-1] -> target`` of every
  train example); the score of an item is its pair count after the query's last
  history item plus a popularity term below 1, so items with equal counts (and every
  item after an unseen last item) are ordered by popularity.
* ``als``: Spark ML ALS with ``implicitPrefs=True`` over the train part's user-item
  interactions (``seen``, confidence 1); the score is the dot product of user and
  item factors, and users without factors get popularity.

The counts and the factorisation run on Spark; the fitted models are small numpy
arrays on the driver (a CSR-like transition table, factor matrices).

Why our own code: Spark ML's ALS only recommends top-K for known users (no exclusions
that spare the target, no fall-back, no full-rank MRR), and the Markov baseline is a
few lines of counting that no library offers in this shape.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sparktf.config import EvalConfig
from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError
from sparktf.evaluation.evalset import EvalSet, evaluate_scores, load_eval_set, read_table, to_pandas
from sparktf.evaluation.metrics import EvaluationResult

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

__all__ = [
    "ALSRecommender",
    "Baseline",
    "ItemCooccurrence",
    "MostPopular",
    "evaluate_baselines",
    "fit_als",
    "fit_baseline",
    "fit_item_cooccurrence",
    "fit_most_popular",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Baseline(abc.ABC):
    """Anything that scores the whole catalogue for a batch of queries.

    A recommender is a ``score_fn`` for :func:`~sparktf.evaluation.evalset.evaluate_scores`.
    """

    name: str

    @abc.abstractmethod
    def score(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        """Scores of every catalogue item for each row.

        Args:
            batch: rows of :attr:`EvalSet.frame` (``user_id``, ``history``, ...).

        Returns:
            [rows, N] scores, column ``j`` for vocabulary index ``j + 1``, higher is better.
        """

    def __call__(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        return self.score(batch)


def _tiebreak(counts: npt.NDArray[Any]) -> FloatArray:
    """Popularity squeezed into [0, 1): added to integer counts it only breaks ties."""
    c = np.asarray(counts, dtype=np.float64)
    return c / (c.max() + 1.0) if len(c) else c


@dataclass(frozen=True, eq=False)
class MostPopular(Baseline):
    """Every query gets the items by train-part popularity.

    Attributes:
        counts: [N] train-part interaction counts in catalogue order.
    """

    counts: IntArray
    name: str = "most_popular"

    def score(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        # A read-only broadcast view: no [rows, N] copy for a score that is the same in every row.
        return np.broadcast_to(np.asarray(self.counts, dtype=np.float64), (len(batch), len(self.counts)))


@dataclass(frozen=True, eq=False)
class ItemCooccurrence(Baseline):
    """Last-item Markov chain with a popularity fall-back.

    Row ``a`` of the transition table lists the items that followed item ``a`` in the
    train sequences: columns ``indices[indptr[a]:indptr[a+1]]`` with ``counts`` of the
    same slice.

    Attributes:
        item_ids: [N] catalogue item ids (to find the column of a history's last item).
        indptr: [N + 1] int64.
        indices: [nnz] int64 next-item columns.
        counts: [nnz] int64 pair counts.
        popularity: [N] train counts, for ties and unseen last items.
        oov_pairs: train pairs left out because an item of the pair is not in the
            vocabulary (reported, not hidden).
    """

    item_ids: npt.NDArray[np.object_]
    indptr: IntArray
    indices: IntArray
    counts: IntArray
    popularity: IntArray
    oov_pairs: int = 0
    name: str = "item_cooccurrence"
    _index: Any = field(default=None, init=False, repr=False)
    _tie: FloatArray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    def __post_init__(self) -> None:
        import pandas as pd

        object.__setattr__(self, "_index", pd.Index(self.item_ids))
        object.__setattr__(self, "_tie", _tiebreak(self.popularity))

    def last_columns(self, histories: Any) -> IntArray:
        """The catalogue column of each history's last item, -1 if none or unknown."""
        last = [h[-1] if h is not None and len(h) else None for h in histories]
        return np.asarray(self._index.get_indexer(last), dtype=np.int64)

    def score(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        out = np.tile(self._tie, (len(batch), 1))
        cols = self.last_columns(batch["history"])
        rows = np.flatnonzero(cols >= 0)
        starts = self.indptr[cols[rows]]
        lengths = self.indptr[cols[rows] + 1] - starts
        if lengths.sum():
            # Gather every row's CSR slice at once: position within the slice + slice start.
            offsets = np.cumsum(lengths) - lengths
            flat = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
            out[np.repeat(rows, lengths), self.indices[flat]] += self.counts[flat]
        return out


@dataclass(frozen=True, eq=False)
class ALSRecommender(Baseline):
    """Implicit-feedback matrix factorisation (Spark ML ALS), scored by dot product.

    Attributes:
        user_ids: [U] ids of the users with factors.
        user_factors: [U, rank] float32.
        item_factors: [N, rank] float32 in catalogue order (zeros for an item ALS
            never saw).
        popularity: [N] train counts, the scores of users without factors.
    """

    user_ids: npt.NDArray[np.object_]
    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    popularity: IntArray
    name: str = "als"
    _index: Any = field(default=None, init=False, repr=False)
    _tie: FloatArray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    def __post_init__(self) -> None:
        import pandas as pd

        object.__setattr__(self, "_index", pd.Index(self.user_ids))
        object.__setattr__(self, "_tie", _tiebreak(self.popularity))

    def score(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        rows = np.asarray(self._index.get_indexer(batch["user_id"]), dtype=np.int64)
        known = rows >= 0
        out = np.empty((len(batch), self.item_factors.shape[0]), dtype=np.float64)
        out[known] = self.user_factors[rows[known]].astype(np.float64) @ self.item_factors.T.astype(np.float64)
        out[~known] = self._tie
        return out


# --------------------------------------------------------------------------- fitting


def fit_most_popular(eval_set: EvalSet) -> MostPopular:
    """Popularity from the train-part counts of the item vocabulary."""
    return MostPopular(counts=eval_set.item_counts)


def fit_item_cooccurrence(spark: SparkSession, features_path: str, eval_set: EvalSet) -> ItemCooccurrence:
    """Count ``history[-1] -> target`` pairs of the train examples on Spark.

    Raises:
        DataError, SchemaError: the features cannot be read.
    """
    from pyspark.sql import functions as F

    layout = FeaturePaths(features_path)
    examples = read_table(spark, layout.examples, ("history", "target", "split"), what="examples")
    vocab = read_table(spark, layout.item_vocab, ("item_id", "index"), what="item vocabulary")
    cols = F.broadcast(vocab.select("item_id", (F.col("index") - 1).alias("col")))
    pairs = to_pandas(
        examples.where((F.col("split") == "train") & (F.size("history") >= 1))
        .select(F.element_at("history", -1).alias("prev"), F.col("target").alias("next"))
        .groupBy("prev", "next")
        .count()
        .join(cols.withColumnRenamed("item_id", "prev").withColumnRenamed("col", "a"), "prev", "left")
        .join(cols.withColumnRenamed("item_id", "next").withColumnRenamed("col", "b"), "next", "left")
        .select("a", "b", "count")
    )
    known = pairs["a"].notna() & pairs["b"].notna()
    oov_pairs = int(pairs.loc[~known, "count"].sum())
    pairs = pairs[known].sort_values(["a", "b"], kind="stable")
    a = pairs["a"].to_numpy(dtype=np.int64)
    n = eval_set.num_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=n))]).astype(np.int64)
    return ItemCooccurrence(
        item_ids=eval_set.item_ids,
        indptr=indptr,
        indices=pairs["b"].to_numpy(dtype=np.int64),
        counts=pairs["count"].to_numpy(dtype=np.int64),
        popularity=eval_set.item_counts,
        oov_pairs=oov_pairs,
    )


def fit_als(spark: SparkSession, features_path: str, eval_set: EvalSet, cfg: EvalConfig) -> ALSRecommender:
    """Fit Spark ML ALS (implicit feedback) on the train part's user-item pairs.

    Users and items are numbered by their vocabularies (``vocab/users``, ``vocab/items``).

    Raises:
        DataError: no train interactions to factorise.
        SchemaError: the features lack a column.
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    layout = FeaturePaths(features_path)
    seen = read_table(spark, layout.seen, ("user_id", "items"), what="seen items")
    users = read_table(spark, layout.user_vocab, ("user_id", "index"), what="user vocabulary")
    items = read_table(spark, layout.item_vocab, ("item_id", "index"), what="item vocabulary")
    interactions = (
        seen.select("user_id", F.explode("items").alias("item_id"))
        .distinct()
        .join(F.broadcast(users.select("user_id", F.col("index").cast("int").alias("u"))), "user_id")
        .join(F.broadcast(items.select("item_id", F.col("index").cast("int").alias("i"))), "item_id")
        .select("u", "i", F.lit(1.0).alias("r"))
    )
    als = ALS(
        rank=cfg.als_rank,
        maxIter=cfg.als_max_iter,
        regParam=cfg.als_reg_param,
        alpha=cfg.als_alpha,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="r",
        seed=cfg.seed,
        coldStartStrategy="nan",
    )
    interactions = interactions.cache()
    try:
        if interactions.isEmpty():
            raise DataError(
                f"No train interactions to fit ALS on: {layout.seen} joined with the user and item vocabularies is empty.",
                hint="Check that seen/, vocab/users/ and vocab/items/ come from the same features run.",
            )
        model = als.fit(interactions)
    finally:
        interactions.unpersist()
    user_pdf = to_pandas(
        model.userFactors.join(users.select(F.col("index").alias("id"), "user_id"), "id").select("user_id", "features")
    )
    item_pdf = to_pandas(model.itemFactors.select("id", "features"))
    item_factors = np.zeros((eval_set.num_items, cfg.als_rank), dtype=np.float32)
    if len(item_pdf):
        item_factors[item_pdf["id"].to_numpy(dtype=np.int64) - 1] = np.stack(item_pdf["features"].to_numpy())
    user_factors = (
        np.stack(user_pdf["features"].to_numpy()).astype(np.float32)
        if len(user_pdf)
        else np.zeros((0, cfg.als_rank), dtype=np.float32)
    )
    return ALSRecommender(
        user_ids=user_pdf["user_id"].to_numpy(dtype=object),
        user_factors=user_factors,
        item_factors=item_factors,
        popularity=eval_set.item_counts,
    )


def fit_baseline(name: str, spark: SparkSession, features_path: str, eval_set: EvalSet, cfg: EvalConfig) -> Baseline:
    """Fit one baseline by its ``evaluation.baselines`` name."""
    if name == "most_popular":
        return fit_most_popular(eval_set)
    if name == "item_cooccurrence":
        return fit_item_cooccurrence(spark, features_path, eval_set)
    if name == "als":
        return fit_als(spark, features_path, eval_set, cfg)
    raise DataError(
        f"Unknown baseline {name!r}.", hint="evaluation.baselines takes 'most_popular', 'item_cooccurrence', 'als'."
    )


def evaluate_baselines(
    spark: SparkSession,
    features_path: str,
    cfg: EvalConfig,
    *,
    eval_set: EvalSet | None = None,
) -> dict[str, EvaluationResult]:
    """Fit and evaluate every baseline of ``cfg.baselines`` on ``cfg.split``.

    Args:
        spark: the session.
        features_path: the features directory (``Config.paths.features``).
        cfg: the ``[evaluation]`` section.
        eval_set: the queries, when the caller has them already (must match ``cfg``).

    Returns:
        ``{baseline name: result}`` in the order of ``cfg.baselines``.
    """
    if eval_set is None:
        eval_set = load_eval_set(
            spark,
            features_path,
            split=cfg.split,
            exclude_seen=cfg.exclude_seen,
            popularity_shares=cfg.popularity_shares,
        )
    results: dict[str, EvaluationResult] = {}
    for name in cfg.baselines:
        recommender = fit_baseline(name, spark, features_path, eval_set, cfg)
        results[name] = evaluate_scores(eval_set, recommender, model=name, ks=cfg.ks, batch_size=cfg.batch_size)
    return results
