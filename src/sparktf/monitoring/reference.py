"""The reference profile of a trained export, measured on its validation queries.

The training stage calls :func:`write_export_reference` once per model, after the export is
written and before it is logged to MLflow, so the profile travels with the version: beside
the export (``assets.extra/reference_profile.json`` + ``reference_items.npy``), inside the
MLflow model and so inside every registry download, and as the run's artifact
``monitoring/reference_profile.json``.

The queries are the ``validation`` split of the features (one per user, the history before
the user's validation item), which is what a request for a known user looks like: the
user's recent items. The top-1 score is the export's own score (query embedding · item
embedding, :func:`sparktf.evaluation.scoring.export_score_fn`) over the catalogue with the
user's seen items excluded, as the server ranks by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.monitoring.profile import Reference, build_reference, write_reference

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ReferenceQueries", "load_reference_queries", "top1_scores", "write_export_reference"]


def top1_scores(eval_set: Any, exported: Any, batch_size: int = 1024) -> np.ndarray:
    """The export's best score per query of ``eval_set`` with its exclusions applied (NaN
    when every item is excluded)."""
    from sparktf.evaluation.scoring import export_score_fn

    score = export_score_fn(exported, eval_set.item_ids)
    frame = eval_set.frame
    exclude = eval_set.queries.exclude
    out = np.full(len(frame), np.nan)
    for start in range(0, len(frame), batch_size):
        stop = min(start + batch_size, len(frame))
        s = np.array(score(frame.iloc[start:stop].reset_index(drop=True)), dtype=np.float64)
        if exclude is not None:
            ex = exclude.rows(start, stop)
            rows = np.repeat(np.arange(stop - start), np.diff(ex.indptr))
            s[rows, ex.indices] = -np.inf
        best = s.max(axis=1)
        out[start:stop] = np.where(np.isfinite(best), best, np.nan)
    return out


@dataclass(frozen=True)
class ReferenceQueries:
    """What every model's reference is measured on (read once per training run): the
    validation queries and the items' category and price bucket."""

    eval_set: Any
    category: dict[str, Any]
    price_bucket: dict[str, Any]
    popularity_shares: tuple[float, ...]


def load_reference_queries(
    spark: SparkSession, features_path: str, *, exclude_seen: bool, popularity_shares: Sequence[float]
) -> ReferenceQueries:
    """Read the validation queries and the item attributes of ``features_path``."""
    from sparktf.data.schema import FeaturePaths
    from sparktf.evaluation.evalset import load_eval_set, read_table, to_pandas

    eval_set = load_eval_set(
        spark, features_path, split="validation", exclude_seen=exclude_seen, popularity_shares=popularity_shares
    )
    items = to_pandas(
        read_table(spark, FeaturePaths(features_path).items, ("item_id", "category", "price_bucket"), what="items")
    )
    ids = items["item_id"].astype(str)
    return ReferenceQueries(
        eval_set=eval_set,
        category={k: v for k, v in zip(ids, items["category"], strict=True) if v is not None},
        price_bucket={k: v for k, v in zip(ids, items["price_bucket"], strict=True) if v is not None},
        popularity_shares=tuple(popularity_shares),
    )


def write_export_reference(
    queries: ReferenceQueries,
    export_path: str,
    *,
    score_bins: int,
    length_bins: int,
    top_categories: int,
    batch_size: int = 1024,
) -> tuple[Reference, list[str]]:
    """Measure the reference profile of the export at ``export_path`` on ``queries`` and
    write it into the export's ``assets.extra``.

    Returns:
        The profile and the files written.
    """
    from sparktf.models.export import load_exported

    eval_set = queries.eval_set
    exported = load_exported(export_path)
    counts_by_id = dict(zip((str(x) for x in eval_set.item_ids), eval_set.item_counts.tolist(), strict=True))
    export_ids = [str(x) for x in exported.item_ids.tolist()]
    histories = [[str(x) for x in h] if h is not None else [] for h in eval_set.frame["history"]]
    reference = build_reference(
        model_kind=str(exported.meta.get("kind", "")),
        split="validation",
        item_ids=export_ids,
        item_counts=[counts_by_id.get(x, 0) for x in export_ids],
        item_category=queries.category,
        item_price_bucket=queries.price_bucket,
        histories=histories,
        top1_scores=top1_scores(eval_set, exported, batch_size),
        history_cap=int(exported.meta.get("params", {}).get("max_history") or max(map(len, histories), default=1)),
        score_bins=score_bins,
        length_bins=length_bins,
        top_categories=top_categories,
        popularity_shares=queries.popularity_shares,
    )
    return reference, write_reference(os.path.join(export_path, "assets.extra"), reference)
