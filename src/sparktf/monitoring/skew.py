"""Training/serving skew: the history the server ranked a reply from against the history the
batch feature code builds for that user at the same time.

A sample of replies (by a hash of ``request_id``, so a rerun samples the same ones) is joined
with every event of its user (batch and live) strictly before the reply; the feature code
(:func:`sparktf.data.features.steps`, :func:`~sparktf.data.features.with_history`) turns those
events into the user's history as training would see it, and :func:`history_skew` compares
it with the served one: equal or not, Jaccard overlap, length difference. Skew compares one
user through two code paths; drift (:mod:`sparktf.monitoring.profile`) compares two
populations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.experiments.assignment import ANONYMOUS_PREFIX

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from sparktf.config import FeatureConfig

__all__ = ["HistorySkew", "history_skew", "parse_context", "skew"]

_HASH_BUCKETS = 1_000_000


def parse_context(text: str | None) -> tuple[str, ...] | None:
    """An impression's ``context`` (a JSON array of item ids) as a history; None when it is not one."""
    if text is None:
        return ()
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(value, list):
        return None
    return tuple(str(x) for x in value if isinstance(x, str | int))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class HistorySkew:
    """One reply's served history against the batch one (both cut to ``max_history``).

    Attributes:
        exact: the same items in the same order.
        jaccard: |served ∩ batch| / |served ∪ batch| of the item sets (1 when both are empty).
        length_diff: ``len(served) - len(batch)``.
    """

    exact: bool
    jaccard: float
    length_diff: int


def history_skew(served: Sequence[str], batch: Sequence[str], max_history: int) -> HistorySkew:
    """How far the history the server used is from the batch features' one (pure)."""
    s = list(served)[-max_history:] if max_history > 0 else []
    b = list(batch)[-max_history:] if max_history > 0 else []
    union = set(s) | set(b)
    jaccard = len(set(s) & set(b)) / len(union) if union else 1.0
    return HistorySkew(exact=s == b, jaccard=jaccard, length_diff=len(s) - len(b))


def _measure(frames: Iterator[pd.DataFrame], *, max_history: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas``: :func:`history_skew` of each sampled reply."""
    import pandas as pd

    for frame in frames:
        rows: list[tuple[Any, ...]] = []
        for rid, version, user, t, context, batch in zip(
            frame["request_id"], frame["version"], frame["user_id"], frame["time"], frame["context"], frame["batch"],
            strict=True,
        ):  # fmt: skip
            served = parse_context(context)
            if served is None:
                rows.append((rid, version, user, t, None, None, None, None, None, False))
                continue
            b = [str(x) for x in batch] if batch is not None else []
            m = history_skew(served, b, max_history)
            s_cut = list(served)[-max_history:]
            rows.append((rid, version, user, t, s_cut, b[-max_history:], m.exact, m.jaccard, m.length_diff, True))
        yield pd.DataFrame(
            rows,
            columns=[
                "request_id", "version", "user_id", "time", "served", "batch", "exact", "jaccard", "length_diff",
                "readable",
            ],
        )  # fmt: skip


_SKEW_SCHEMA = (
    "request_id string, version string, user_id string, time string, served array<string>, batch array<string>, "
    "exact boolean, jaccard double, length_diff long, readable boolean"
)


def skew(
    reps: DataFrame,
    history_events: DataFrame,
    *,
    features: FeatureConfig,
    event_types: tuple[str, ...],
    sample: float,
    examples: int = 5,
) -> dict[str, Any]:
    """Training/serving skew of the histories of a sample of replies.

    Args:
        reps: :func:`replies`.
        history_events: every validated event (batch and live, ``EVENT_COLUMNS``:
            :func:`sparktf.data.features.read_events`).
        features: ``[features]`` (positive event types, session gap, ``max_history``).
        event_types: ``data.event_types`` in funnel order (ties in time).
        sample: the share of replies compared, chosen by a hash of ``request_id`` (so a rerun
            picks the same ones); replies to anonymous units (sessions) are left out.
        examples: mismatches to show.

    Returns:
        ``{"sample", "max_history", "sampled", "unreadable", "overall": {...}, "versions":
        {version: {...}}, "examples": [...]}``, each summary with ``requests``,
        ``exact_share``, ``mean_jaccard``, ``mean_length_diff`` (served − batch) and
        ``mean_abs_length_diff``.
    """
    import functools

    from pyspark.sql import functions as F

    from sparktf.data.features import steps, with_history

    max_history = features.max_history
    threshold = round(sample * _HASH_BUCKETS)
    picked = reps.where(
        F.col("user_id").isNotNull()
        & ~F.col("user_id").startswith(ANONYMOUS_PREFIX)
        & (F.pmod(F.xxhash64(F.col("request_id")), F.lit(_HASH_BUCKETS)) < F.lit(threshold))
    ).select("request_id", "version", "user_id", "t", "context")
    users = picked.select("user_id").distinct()
    mine = history_events.join(users, "user_id", "left_semi")
    numbered = with_history(steps(mine, features, event_types), max_history).select(
        F.col("user_id").alias("step_user"),
        F.col("event_time").alias("step_time"),
        "pos",
        F.concat("history", F.array("item_id")).alias("upto"),
    )
    # The user's last step before the reply: its history and itself are the history then.
    prior = picked.join(numbered, (F.col("user_id") == F.col("step_user")) & (F.col("step_time") < F.col("t")), "left")
    last = F.max_by("upto", "pos")
    batch = F.coalesce(
        F.slice(last, F.greatest(F.size(last) - max_history + 1, F.lit(1)), max_history),
        F.array().cast("array<string>"),
    )
    with_batch = (
        prior.groupBy("request_id", "version", "user_id", "t", "context")
        .agg(batch.alias("batch"))
        .select(
            "request_id",
            "version",
            "user_id",
            F.date_format("t", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("time"),
            "context",
            "batch",
        )
    )
    measured = with_batch.mapInPandas(functools.partial(_measure, max_history=max_history), _SKEW_SCHEMA).cache()
    try:
        ok = F.col("readable")
        per_version = [
            r.asDict()
            for r in measured.groupBy("version")
            .agg(
                F.count(F.lit(1)).alias("sampled"),
                F.sum((~ok).cast("long")).alias("unreadable"),
                F.sum(ok.cast("long")).alias("requests"),
                F.sum(F.when(ok, F.col("exact").cast("long"))).alias("exact"),
                F.sum(F.when(ok, F.col("jaccard"))).alias("jaccard"),
                F.sum(F.when(ok, F.col("length_diff"))).alias("length_diff"),
                F.sum(F.when(ok, F.abs("length_diff"))).alias("abs_length_diff"),
            )
            .collect()
        ]
        shown = (
            measured.where(ok & ~F.col("exact"))
            .orderBy("jaccard", "request_id")
            .limit(examples)
            .select("request_id", "version", "user_id", "time", "served", "batch", "jaccard", "length_diff")
            .collect()
        )
    finally:
        measured.unpersist()

    def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        n = sum(int(r["requests"] or 0) for r in rows)

        def mean(key: str) -> float | None:
            return sum(float(r[key] or 0) for r in rows) / n if n else None

        return {
            "requests": n,
            "exact_share": mean("exact"),
            "mean_jaccard": mean("jaccard"),
            "mean_length_diff": mean("length_diff"),
            "mean_abs_length_diff": mean("abs_length_diff"),
        }

    return {
        "sample": sample,
        "max_history": max_history,
        "sampled": sum(int(r["sampled"]) for r in per_version),
        "unreadable": sum(int(r["unreadable"] or 0) for r in per_version),
        "overall": summary(per_version),
        "versions": {str(r["version"]): summary([r]) for r in sorted(per_version, key=lambda r: str(r["version"]))},
        "examples": [
            {
                "request_id": r["request_id"],
                "version": r["version"],
                "user_id": r["user_id"],
                "time": r["time"],
                "served": list(r["served"]),
                "batch": list(r["batch"]),
                "jaccard": r["jaccard"],
                "length_diff": r["length_diff"],
            }
            for r in shown
        ],
    }
