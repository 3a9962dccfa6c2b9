"""Baselines, fitted on the train split and evaluated exactly like the models.

Four recommenders, each a :class:`Baseline` whose :meth:`~Baseline.score`
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
* ``repeat_frequent``: the user's own most frequent items, the classic grocery
  baseline ("buy again"). The score of an item is how often the user interacted with
  it before the query's target, plus the popularity term below 1, so ties and items the
  user never had are ordered by popularity. The counts are of *steps* (the features
  collapse consecutive repeats of one item) and come from the ``examples``, the only
  table that keeps multiplicities (``seen`` holds distinct items, a history at most
  ``features.max_history`` of them): every step of a user except the first is the
  target of one example, and the first is the history of the user's earliest example.
  A user's first step and train-split targets precede every query; a validation or
  test target counts for the queries strictly later in time (for the test query of
  leave-last-out: the validation step, the last item of its history). So the counts
  are the user's steps before the target, the train part plus the rest of the
  history, and never the target itself (nor a step at the very same time as it).
  It is meant for ``exclude_seen = false``, where a repeat may be the answer, as most
  of a grocery basket is. Under the product protocol (``evaluation.exclude_seen``) the
  items the user had before are excluded *except the target*
  (:mod:`sparktf.evaluation.metrics`), so it does not simply degenerate to
  ``most_popular``: a new target gets ``most_popular``'s rank, but a repeated target is
  the one candidate left with a count and is always ranked first. That hit measures the
  protocol (the target is the only seen item it keeps), not the baseline; read this
  baseline's product-protocol numbers as "most_popular, plus every repeat".

The counts and the factorisation run on Spark; the fitted models are small numpy
arrays on the driver (a CSR-like transition table, factor matrices, per-user counts).

Why our own code: Spark ML's ALS only recommends top-K for known users (no exclusions
that spare the target, no fall-back, no full-rank MRR), and the Markov and repeat
baselines are a few lines of counting over our examples that no library offers in
this shape.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
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
    "RepeatFrequent",
    "evaluate_baselines",
    "evaluate_baselines_under",
    "fit_als",
    "fit_baseline",
    "fit_item_cooccurrence",
    "fit_most_popular",
    "fit_repeat_frequent",
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


def _micros(times: Any) -> IntArray:
    """Timestamps (pandas or numpy, naive as Spark's ``toPandas`` gives them) as int64 microseconds."""
    return np.asarray(np.asarray(times, dtype="datetime64[us]").astype(np.int64), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class RepeatFrequent(Baseline):
    """The user's items by how often the user had them before the query, then popularity.

    Per user (row ``u`` of ``user_ids``), two CSR slices: ``base_*[base_indptr[u]:
    base_indptr[u+1]]`` are the item columns and counts of the steps before any query (the
    first step and the train targets, one entry per item); ``later_*[later_indptr[u]:
    later_indptr[u+1]]`` are the item columns and times (microseconds) of the validation
    and test targets, each counted for the queries strictly after it.

    Attributes:
        user_ids: [U] ids of the users with examples.
        base_indptr: [U + 1] int64.
        base_indices: [nnz] int64 item columns.
        base_counts: [nnz] int64 step counts.
        later_indptr: [U + 1] int64.
        later_indices: [m] int64 item columns.
        later_times: [m] int64 microseconds (as the query frame's ``event_time``).
        popularity: [N] train counts, for ties and items the user never had.
        oov_steps: steps left out because their item is not in the vocabulary.
    """

    user_ids: npt.NDArray[np.object_]
    base_indptr: IntArray
    base_indices: IntArray
    base_counts: IntArray
    later_indptr: IntArray
    later_indices: IntArray
    later_times: IntArray
    popularity: IntArray
    oov_steps: int = 0
    name: str = "repeat_frequent"
    _index: Any = field(default=None, init=False, repr=False)
    _tie: FloatArray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    def __post_init__(self) -> None:
        import pandas as pd

        object.__setattr__(self, "_index", pd.Index(self.user_ids))
        object.__setattr__(self, "_tie", _tiebreak(self.popularity))

    @staticmethod
    def _gather(indptr: IntArray, users: IntArray) -> tuple[IntArray, IntArray]:
        """(batch row, flat position) of every entry of the given rows' CSR slices."""
        rows = np.flatnonzero(users >= 0)
        starts = indptr[users[rows]]
        lengths = indptr[users[rows] + 1] - starts
        offsets = np.cumsum(lengths) - lengths
        flat = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
        return np.repeat(rows, lengths), flat

    def score(self, batch: pd.DataFrame) -> npt.NDArray[Any]:
        out = np.tile(self._tie, (len(batch), 1))
        users = np.asarray(self._index.get_indexer(batch["user_id"]), dtype=np.int64)
        rows, flat = self._gather(self.base_indptr, users)
        # One entry per (user, item) in a slice, so a plain fancy-index add is exact.
        out[rows, self.base_indices[flat]] += self.base_counts[flat]
        rows, flat = self._gather(self.later_indptr, users)
        if len(flat):
            if "event_time" not in batch.columns:
                raise DataError(
                    "repeat_frequent needs the queries' event_time to count the validation and test steps "
                    "before each query; the batch has only " + ", ".join(map(str, batch.columns)) + ".",
                    hint="Evaluate on the examples of the features stage, which carry event_time "
                    "(docs/data-contract.md).",
                )
            before = self.later_times[flat] < _micros(batch["event_time"])[rows]
            # The same item may follow twice (a validation and an earlier test step): add.at counts both.
            np.add.at(out, (rows[before], self.later_indices[flat[before]]), 1.0)
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


def _csr(users: IntArray, num_users: int) -> IntArray:
    """``indptr`` of rows sorted by ``users`` (0..num_users-1)."""
    return np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))]).astype(np.int64)


def fit_repeat_frequent(spark: SparkSession, features_path: str, eval_set: EvalSet) -> RepeatFrequent:
    """Count each user's steps per item from the examples on Spark (see the module docstring).

    Raises:
        DataError, SchemaError: the features cannot be read.
    """
    from pyspark.sql import functions as F

    layout = FeaturePaths(features_path)
    examples = read_table(
        spark, layout.examples, ("user_id", "history", "target", "event_time", "split"), what="examples"
    )
    vocab = read_table(spark, layout.item_vocab, ("item_id", "index"), what="item vocabulary")
    cols = F.broadcast(vocab.select("item_id", (F.col("index") - 1).alias("col")))
    # The user's first step: the one history item of the earliest example (history_len 1 at
    # position 2; the time breaks ties when max_history is 1).
    first = (
        examples.where(F.size("history") >= 1)
        .groupBy("user_id")
        .agg(F.min(F.struct(F.size("history"), F.col("event_time"), F.col("history")[0].alias("item"))).alias("m"))
        .select("user_id", F.col("m.item").alias("item_id"))
    )
    train = examples.where(F.col("split") == "train").select("user_id", F.col("target").alias("item_id"))
    base = to_pandas(
        first.unionByName(train)
        .groupBy("user_id", "item_id")
        .count()
        .join(cols, "item_id", "left")
        .select("user_id", "col", "count")
    )
    later = to_pandas(
        examples.where(F.col("split") != "train")
        .select("user_id", F.col("target").alias("item_id"), "event_time")
        .join(cols, "item_id", "left")
        .select("user_id", "col", "event_time")
    )
    known_base, known_later = base["col"].notna(), later["col"].notna()
    oov_steps = int(base.loc[~known_base, "count"].sum()) + int((~known_later).sum())
    base, later = base[known_base], later[known_later]
    user_ids = np.asarray(sorted(set(base["user_id"]) | set(later["user_id"])), dtype=object)
    import pandas as pd

    index = pd.Index(user_ids)
    base_u = np.asarray(index.get_indexer(base["user_id"]), dtype=np.int64)
    later_u = np.asarray(index.get_indexer(later["user_id"]), dtype=np.int64)
    b = np.argsort(base_u, kind="stable")
    times = _micros(later["event_time"])
    lo = np.lexsort((times, later_u))
    return RepeatFrequent(
        user_ids=user_ids,
        base_indptr=_csr(base_u, len(user_ids)),
        base_indices=base["col"].to_numpy(dtype=np.int64)[b],
        base_counts=base["count"].to_numpy(dtype=np.int64)[b],
        later_indptr=_csr(later_u, len(user_ids)),
        later_indices=later["col"].to_numpy(dtype=np.int64)[lo],
        later_times=times[lo],
        popularity=eval_set.item_counts,
        oov_steps=oov_steps,
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
    if name == "repeat_frequent":
        return fit_repeat_frequent(spark, features_path, eval_set)
    raise DataError(
        f"Unknown baseline {name!r}.",
        hint="evaluation.baselines takes 'most_popular', 'item_cooccurrence', 'als', 'repeat_frequent'.",
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
    return evaluate_baselines_under(spark, features_path, cfg, {"": eval_set})[""]


def evaluate_baselines_under(
    spark: SparkSession, features_path: str, cfg: EvalConfig, eval_sets: Mapping[str, EvalSet]
) -> dict[str, dict[str, EvaluationResult]]:
    """Every baseline of ``cfg.baselines`` fitted once (ALS is the slow one) and scored on
    each of ``eval_sets``: the same queries under several protocols
    (:func:`sparktf.evaluation.protocols.under`), fitted on the first.

    Returns:
        ``{set name: {baseline name: result}}``, baselines in the order of ``cfg.baselines``.
    """
    first = next(iter(eval_sets.values()))
    results: dict[str, dict[str, EvaluationResult]] = {name: {} for name in eval_sets}
    for name in cfg.baselines:
        recommender = fit_baseline(name, spark, features_path, first, cfg)
        for set_name, queries in eval_sets.items():
            results[set_name][name] = evaluate_scores(
                queries, recommender, model=name, ks=cfg.ks, batch_size=cfg.batch_size
            )
    return results
