"""The queries of one split, read from the features, and the entry point that scores them.

:func:`load_eval_set` reads ``examples`` (one split), ``seen`` and ``vocab/items`` of the
features (``docs/data-contract.md``) and keeps on the driver only what evaluation needs:
the rows a model sees (user, history; never the target's own columns), the target's
catalogue column, the excluded columns and the slice labels. Mapping item ids to
catalogue columns and building the exclusion sets is done by Spark, so the driver
gets small integer arrays instead of one Python dict look-up per seen item.

:func:`evaluate_scores` is what models and baselines call: it feeds batches of those
rows to a ``score_fn`` and hands the scores to :mod:`sparktf.evaluation.metrics`.

Why our own code: the join of examples, seen items and vocabulary is specific to our
data contract, and no evaluation library reads it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError, SchemaError
from sparktf.evaluation.metrics import EvaluationResult, Exclusions, Queries, evaluate_ranking

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "SLICINGS",
    "EvalSet",
    "ScoreFn",
    "evaluate_scores",
    "load_eval_set",
    "popularity_buckets",
    "read_table",
    "to_pandas",
]

#: A model or baseline: the rows of a batch of queries -> [rows, catalogue size] scores.
ScoreFn = Callable[["pd.DataFrame"], Any]

#: The slicings every evaluation reports.
SLICINGS = ("user_activity", "target_popularity", "target_category")

# The columns of the examples (sparktf.data.schema.EXAMPLE_COLUMNS) that evaluation reads.
_EXAMPLE_COLUMNS = ("user_id", "history", "target", "target_category", "user_activity", "split")
_EXCLUSION_RULE = "items the user interacted with before the target (train part and history)"


@dataclass(frozen=True, eq=False)
class EvalSet:
    """The queries of one split and the catalogue they are ranked against.

    Attributes:
        split: ``validation`` or ``test``.
        item_ids: [N] item ids in catalogue order (vocabulary index 1..N).
        item_counts: [N] train-part interaction counts of those items.
        frame: [Q] the example rows a model sees: every column of ``examples``
            except ``split`` and the target's own columns (``target*``), so a model
            cannot peek at the answer. Rows are sorted by user and time.
        queries: targets (catalogue columns), exclusions and slice labels.
    """

    split: str
    item_ids: npt.NDArray[np.object_]
    item_counts: npt.NDArray[np.int64]
    frame: pd.DataFrame
    queries: Queries

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.queries)


def read_table(spark: SparkSession, path: str, columns: Sequence[str], *, what: str) -> DataFrame:
    """Read a Parquet table of the features and check that it has ``columns``.

    Raises:
        DataError: the path cannot be read.
        SchemaError: a column is missing.
    """
    from pyspark.errors import AnalysisException

    try:
        df = spark.read.parquet(path)
    except AnalysisException as exc:
        raise DataError(
            f"Cannot read the {what} table at {path}: {str(exc).splitlines()[0]}",
            hint="Run the features stage first (`sparktf prepare`), or point at its data/features directory.",
        ) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(
            f"The {what} table at {path} lacks column(s) {', '.join(missing)}; it has {', '.join(df.columns)}.",
            hint="See docs/data-contract.md for the columns each features table must have.",
        )
    return df


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """``df.toPandas()`` (through Arrow), typed as a pandas DataFrame."""
    return typing.cast("pd.DataFrame", df.toPandas())


def _catalogue(spark: SparkSession, root: str) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    path = FeaturePaths(root).item_vocab
    vocab = read_table(spark, path, ("item_id", "index", "count"), what="item vocabulary")
    pdf = to_pandas(vocab.select("item_id", "index", "count"))
    pdf = pdf.sort_values("index", kind="stable").reset_index(drop=True)
    index = pdf["index"].to_numpy(dtype=np.int64)
    expected = np.arange(1, len(pdf) + 1)
    if len(pdf) == 0:
        raise DataError(f"The item vocabulary at {path} is empty; there is no catalogue to rank.")
    if not np.array_equal(index, expected):
        row = int(np.flatnonzero(index != expected)[0])
        raise DataError(
            f"The item vocabulary at {path} must number its {len(pdf)} items 1..{len(pdf)}; "
            f"row {row} (item {pdf['item_id'][row]!r}) has index {int(index[row])}.",
            hint="Rebuild the features; index 0 is reserved for out-of-vocabulary items.",
        )
    dup = pdf["item_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"The item vocabulary at {path} lists item {pdf['item_id'][row]!r} twice (index {row + 1}).")
    if pdf["item_id"].isna().any():
        raise DataError(
            f"The item vocabulary at {path} has a null item_id at index {int(pdf['item_id'].isna().idxmax()) + 1}."
        )
    counts = pdf["count"].fillna(0).to_numpy(dtype=np.int64)
    return pdf["item_id"].to_numpy(dtype=object), counts


def popularity_buckets(counts: npt.NDArray[Any], shares: Sequence[float] = (0.5, 0.8)) -> npt.NDArray[np.str_]:
    """``head``/``torso``/``tail`` per item by the share of train interactions before it.

    Items are taken from the most to the least popular; an item is ``head`` while the
    items more popular than it hold less than ``shares[0]`` of all interactions,
    ``torso`` below ``shares[1]``, ``tail`` after. The most popular item is always head.

    Args:
        counts: [N] train interaction counts.
        shares: two increasing cumulative shares in (0, 1).
    """
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    before = np.cumsum(counts[order]) - counts[order]
    share = before / total if total > 0 else np.zeros_like(before)
    labels_sorted = np.where(share < shares[0], "head", np.where(share < shares[1], "torso", "tail"))
    labels = np.empty(len(counts), dtype="<U5")
    labels[order] = labels_sorted
    return labels


def load_eval_set(
    spark: SparkSession,
    features_path: str,
    *,
    split: str = "test",
    exclude_seen: bool = True,
    popularity_shares: Sequence[float] = (0.5, 0.8),
) -> EvalSet:
    """Read the queries of one split from the features.

    Args:
        spark: the session.
        features_path: the features directory (``Config.paths.features``).
        split: ``validation`` or ``test``.
        exclude_seen: exclude, per query, the user's train-part items (``seen``) and
            the query's history; the target itself stays a candidate.
        popularity_shares: the head/torso/tail cuts of :func:`popularity_buckets`.

    Raises:
        DataError: a table is missing or inconsistent, or the split has no rows.
        SchemaError: a table lacks a column of the data contract.
    """
    from pyspark.sql import functions as F

    root = features_path.rstrip("/")
    item_ids, item_counts = _catalogue(spark, root)
    layout = FeaturePaths(root)
    examples_path = layout.examples
    examples = read_table(spark, examples_path, _EXAMPLE_COLUMNS, what="examples")
    vocab = read_table(spark, layout.item_vocab, ("item_id", "index"), what="item vocabulary")
    columns = F.broadcast(vocab.select(F.col("item_id").alias("_item"), (F.col("index") - 1).alias("_col")))

    ex = examples.where(F.col("split") == split).withColumn("_q", F.monotonically_increasing_id())
    if exclude_seen:
        # The row id joins the exclusions back; ids are only stable if computed once.
        ex = ex.localCheckpoint()
    ex = ex.join(columns.withColumnRenamed("_item", "target").withColumnRenamed("_col", "_target"), "target", "left")
    if exclude_seen:
        seen = read_table(spark, layout.seen, ("user_id", "items"), what="seen items")
        empty = F.array().cast("array<string>")
        prior = ex.select("_q", "user_id", "history").join(
            seen.select("user_id", F.col("items").alias("_seen")), "user_id", "left"
        )
        items = F.array_union(F.coalesce("_seen", empty), F.coalesce("history", empty))
        excluded = (
            prior.select("_q", F.explode(items).alias("_item"))
            .join(columns, "_item")
            .groupBy("_q")
            .agg(F.sort_array(F.collect_set("_col")).alias("_exclude"))
        )
        ex = ex.join(excluded, "_q", "left")
    order = ["user_id", "event_time", "_target"] if "event_time" in examples.columns else ["user_id", "_target"]
    shown = [c for c in examples.columns if c != "split" and not c.startswith("target")]
    keep = shown + ["_target", "target", "target_category"] + (["_exclude"] if exclude_seen else [])
    pdf = to_pandas(ex.select(*keep).orderBy(*order))
    if len(pdf) == 0:
        raise DataError(
            f"The {split!r} split of {examples_path} has no rows to evaluate.",
            hint="Check the features stage: leave-last-out needs users with at least 3 events.",
        )

    targets = pdf["_target"].fillna(-1).to_numpy(dtype=np.int64)
    pop = popularity_buckets(item_counts, popularity_shares)
    target_pop = np.where(targets >= 0, pop[np.maximum(targets, 0)], "oov")
    queries = Queries(
        targets=targets,
        num_items=len(item_ids),
        exclude=(
            Exclusions.from_lists([x if x is not None else () for x in pdf["_exclude"]]) if exclude_seen else None
        ),
        slices={
            "user_activity": pdf["user_activity"].fillna("unknown").astype(str).to_numpy(),
            "target_popularity": target_pop,
            "target_category": pdf["target_category"].fillna("unknown").astype(str).to_numpy(),
        },
        split=split,
        exclusion_rule=_EXCLUSION_RULE,
        user_ids=pdf["user_id"].to_numpy(dtype=object),
        item_ids=item_ids,
    )
    return EvalSet(
        split=split,
        item_ids=item_ids,
        item_counts=item_counts,
        frame=pdf[shown].reset_index(drop=True),
        queries=queries,
    )


def evaluate_scores(
    eval_set: EvalSet,
    score_fn: ScoreFn,
    *,
    model: str,
    ks: Sequence[int] = (10, 20, 50, 100),
    batch_size: int = 1024,
) -> EvaluationResult:
    """Evaluate a model over the full catalogue of ``eval_set``.

    Args:
        eval_set: from :func:`load_eval_set`.
        score_fn: called with a pandas DataFrame of up to ``batch_size`` rows of
            ``eval_set.frame`` (index reset to 0..rows-1); returns [rows, N] scores
            (numpy or anything ``np.asarray`` takes, e.g. a TF tensor), column ``j``
            for vocabulary index ``j + 1``, higher is better.
        model: the name the result carries.
        ks: cut-offs.
        batch_size: rows per call (lowered for very large catalogues).

    Raises:
        ModelError: scores of the wrong shape or with NaN, naming the query and item.
    """
    frame = eval_set.frame

    def rows(start: int, stop: int) -> npt.NDArray[Any]:
        return np.asarray(score_fn(frame.iloc[start:stop].reset_index(drop=True)))

    return evaluate_ranking(rows, eval_set.queries, ks=ks, model=model, batch_size=batch_size)
