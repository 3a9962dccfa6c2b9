"""``sparktf monitor report``: online quality, drift and training/serving skew from the event table.

Inputs: ``data/live/events`` (the server's ``impression`` events, one per shown item, carry
``request_id``, ``position``, the unit in ``user_id``, ``event_time``, the history the reply
was ranked from in ``context``, ``model_version`` and the item's ``score``; the shoppers'
``click``, ``add_to_cart`` and ``purchase`` events name the ``request_id`` they came from),
each served version's reference profile (:mod:`sparktf.monitoring.profile`, saved with the
export), and for skew the batch events the features are built from.

1. :func:`replies`: one row per ``:recommend`` reply of the window (its first impression's
   context, top-1 score and version; a baseline arm's replies are ``baseline:<arm>``).
2. :func:`online_quality`: per version and per hour, requests, impressions, clicks, carts
   and purchases, and CTR, add-to-cart and purchase rate per impression with user-level
   intervals: the moment sums are Spark aggregations, the intervals
   :func:`sparktf.experiments.stats.ratio_estimate` (the experiment report's statistics).
3. :func:`drift`: the replies counted into each version's reference bins by
   :class:`~sparktf.monitoring.profile.Profiler` (the server's own counting code) inside
   ``mapInPandas``; only counts per (version, hour) reach the driver, which sums them and
   calls :func:`~sparktf.monitoring.profile.compare` per hour and for the whole window.
4. :func:`skew`: a sample of replies (by a hash of ``request_id``) whose served history is
   compared with the history the feature code (:func:`sparktf.data.features.steps`,
   :func:`~sparktf.data.features.with_history`) builds for that user from every event
   (batch and live) strictly before the reply: exact-match share, Jaccard overlap, length
   difference (:func:`history_skew`), and a few mismatches.

What the events cannot say: whether the model's user vocabulary knows a user (a named user
whose reply had no history counts as unknown) and where a history came from (a history sent
in the request is compared like a live one; the server's live store keeps consecutive
repeats of an item, which the feature code collapses into one step, so such users mismatch).

Why our own code: Evidently 0.7.23 (Apache-2.0) was measured for the drift section (scratch
virtualenv, 2026-12): it resolves with our pins (a dry run constrained to this project's
exact versions picks numpy 2.2.6, pandas 2.3.3, pyarrow 25.0.1, scipy 1.17.1), installs in
60 s and adds 33 packages and 287 MB (plotly 112 MB, statsmodels 61 MB, evidently 44 MB,
faker, uvloop, nltk, litestar, an ``iterative-telemetry`` client); importing it takes 6.6 s.
``Report(...).save_html`` writes 3.7 MB per report (React and Plotly inlined: no script,
link or font source; headless Chromium with the network cut opened it with no request
beyond the file). But it computes drift from rows, not counts: our reference exists only
as bin counts fixed at training time, and the traffic as counts per hour, so every
(version, hour, feature) would be expanded back into rows (1.55 s for 1 M rows of one
categorical feature), and a numeric feature would be re-binned by Sturges edges over
reference ∪ current unless passed as our own bin labels, when its PSI and JS equal
:func:`~sparktf.monitoring.profile.psi` and :func:`~sparktf.monitoring.profile.js_distance`
(checked to 1e-6). Its report would be a second 3.7 MB page beside ours (quality, skew),
and its recommender metrics need rankings and relevance labels, not user-level intervals
of online rates. So the statistics stay in ``profile.py`` and the page is
:mod:`sparktf.monitoring.html` (inline SVG, a few hundred kB).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.experiments.assignment import ANONYMOUS_PREFIX, IMPRESSION
from sparktf.experiments.report import ACTIONS, METRICS, user_moments
from sparktf.experiments.report import read_events as read_live_events
from sparktf.experiments.stats import RatioTotals, ratio_estimate
from sparktf.monitoring.profile import (
    FEATURES,
    Counts,
    Profiler,
    Reference,
    Thresholds,
    compare,
    load_reference,
)
from sparktf.monitoring.skew import parse_context, skew

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from sparktf.config import FeatureConfig

__all__ = [
    "ACTIONS",
    "VersionProfile",
    "drift",
    "hour_label",
    "load_profile",
    "monitor_report",
    "online_quality",
    "quality_from_row",
    "read_live_events",
    "replies",
    "version_label",
]

#: The label of a reply no model version ranked (an experiment's baseline arm).
BASELINE_PREFIX = "baseline:"


@dataclass(frozen=True)
class VersionProfile:
    """A served version's reference profile and the items its bins are indexed by.

    Attributes:
        reference: the profile saved with the export.
        item_ids: the export's ``item_ids.txt``.
        source: where it was read from (for the report).
    """

    reference: Reference
    item_ids: tuple[str, ...]
    source: str = ""


def load_profile(export_dir: str, source: str = "") -> VersionProfile | None:
    """The reference profile of an export (``<export>/assets.extra/``), or None without one.

    Raises:
        ValueError: the profile is there but cannot be read.
    """
    extra = os.path.join(export_dir, "assets.extra")
    reference = load_reference(extra)
    if reference is None:
        return None
    with open(os.path.join(extra, "item_ids.txt"), encoding="utf-8") as fh:
        ids = tuple(line.rstrip("\n") for line in fh if line.rstrip("\n"))
    return VersionProfile(reference, ids, source or export_dir)


def version_label(model_version: str | None, arm: str | None) -> str:
    """The report's name of what ranked a reply: its model version, else ``baseline:<arm>``."""
    if model_version:
        return str(model_version)
    return BASELINE_PREFIX + (arm or "?")


def hour_label(t: float) -> str:
    """``2026-01-01T13:00Z`` of an epoch second."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))


# --------------------------------------------------------------------------- replies


def replies(events: DataFrame, since: float, until: float) -> DataFrame:
    """One row per reply whose impressions fall in ``[since, until)`` (epoch seconds).

    Returns:
        ``request_id, user_id`` (the unit), ``version`` (:func:`version_label`), ``t``
        (timestamp of its first impression), ``hour`` (epoch second of its hour),
        ``impressions``, ``context`` and ``top1`` (the first position's context and score).
    """
    from pyspark.sql import functions as F

    t = F.col("event_time")
    imp = events.where(
        (F.col("event_type") == IMPRESSION)
        & F.col("request_id").isNotNull()
        & (t >= F.timestamp_seconds(F.lit(float(since))))
        & (t < F.timestamp_seconds(F.lit(float(until))))
    )
    order = F.coalesce(F.col("position"), F.lit(1 << 30))
    label = F.coalesce(F.col("model_version"), F.concat(F.lit(BASELINE_PREFIX), F.coalesce(F.col("arm"), F.lit("?"))))
    grouped = imp.groupBy("request_id").agg(
        F.first("user_id", ignorenulls=True).alias("user_id"),
        F.min_by(label, order).alias("version"),
        F.min("event_time").alias("t"),
        F.count(F.lit(1)).alias("impressions"),
        F.min_by(F.col("context"), order).alias("context"),
        F.min_by(F.col("score"), order).alias("top1"),
    )
    return grouped.withColumn("hour", (F.floor(F.unix_seconds(F.col("t")) / 3600) * 3600).cast("long"))


# --------------------------------------------------------------------------- online quality


def quality_from_row(row: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """Counts and rates (value, se, interval over users) of one row of moment sums (pure)."""
    out: dict[str, Any] = {k: int(row[k]) for k in ("users", "requests", "impressions", *ACTIONS.values())}
    rates = {}
    for metric, column in METRICS.items():
        totals = RatioTotals(
            users=int(row["users"]),
            sum_y=float(row[column]),
            sum_x=float(row["impressions"]),
            sum_yy=float(row[f"{column}_sq"]),
            sum_xx=float(row["impressions_sq"]),
            sum_xy=float(row[f"{column}_x"]),
        )
        est = ratio_estimate(totals, alpha)
        rates[metric] = {"value": est.value, "se": est.se, "ci_low": est.ci_low, "ci_high": est.ci_high}
    out["rates"] = rates
    return out


def online_quality(
    events: DataFrame, reps: DataFrame, alpha: float = 0.05, *, actions_since: float | None = None
) -> dict[str, Any]:
    """Per version: the window's totals and, per hour, requests, impressions, clicks, carts,
    purchases and the three rates with ``1 - alpha`` intervals over users (the unit).

    A reply's actions count in the reply's hour, whenever they came; actions timed before
    ``actions_since`` (epoch seconds) are not read.

    Returns:
        ``{version: {"total": {...}, "hours": [{"t", "hour", ...}]}}``.
    """
    from pyspark.sql import functions as F

    wanted = F.col("event_type").isin(list(ACTIONS)) & F.col("request_id").isNotNull()
    if actions_since is not None:
        wanted &= F.col("event_time") >= F.timestamp_seconds(F.lit(float(actions_since)))
    acts = (
        events.where(wanted)
        .groupBy("request_id")
        .agg(*[F.sum((F.col("event_type") == t).cast("long")).alias(c) for t, c in ACTIONS.items()])
    )
    joined = (
        reps.select("request_id", "user_id", "version", "hour", "impressions")
        .join(acts, "request_id", "left")
        .fillna(0, subset=list(ACTIONS.values()))
    )
    counted = ["requests", "impressions", *ACTIONS.values()]
    cells = joined.groupBy("version", "hour", "user_id").agg(
        F.count(F.lit(1)).alias("requests"),
        F.sum("impressions").alias("impressions"),
        *[F.sum(c).alias(c) for c in ACTIONS.values()],
    )
    # One job: the hours' moments, and the window's (hour null) over each user's hours summed.
    users = cells.groupBy("version", "user_id").agg(*[F.sum(c).alias(c) for c in counted])
    both = user_moments(cells, ["version", "hour"]).unionByName(
        user_moments(users, ["version"]).withColumn("hour", F.lit(None).cast("long"))
    )
    out: dict[str, Any] = {}
    rows = [r.asDict() for r in both.collect()]
    for row in sorted((r for r in rows if r["hour"] is None), key=lambda r: str(r["version"])):
        out[str(row["version"])] = {"total": quality_from_row(row, alpha), "hours": []}
    for row in sorted((r for r in rows if r["hour"] is not None), key=lambda r: (str(r["version"]), r["hour"])):
        point = {"t": int(row["hour"]), "hour": hour_label(int(row["hour"])), **quality_from_row(row, alpha)}
        out[str(row["version"])]["hours"].append(point)
    return out


# --------------------------------------------------------------------------- drift


def _count_replies(frames: Iterator[pd.DataFrame], *, profiles: Mapping[str, VersionProfile]) -> Iterator[pd.DataFrame]:
    """``mapInPandas``: the replies of a partition counted per (version, hour) into the version's bins."""
    import pandas as pd

    profilers: dict[str, Profiler] = {}
    for frame in frames:
        if frame.empty:
            continue
        rows = []
        for (version, hour), part in frame.groupby(["version", "hour"], sort=False):
            profile = profiles.get(str(version))
            if profile is None:
                continue
            profiler = profilers.get(str(version))
            if profiler is None:
                profiler = profilers[str(version)] = Profiler(profile.reference, profile.item_ids)
            counts = profiler.new_counts()
            unreadable = 0
            for user, context, top1 in zip(part["user_id"], part["context"], part["top1"], strict=True):
                history = parse_context(context)
                if history is None:
                    unreadable += 1
                    continue
                named = user is not None and not str(user).startswith(ANONYMOUS_PREFIX)
                score = None if top1 is None or (isinstance(top1, float) and math.isnan(top1)) else float(top1)
                profiler.observe(
                    counts,
                    history,
                    top1=score,
                    fallback=score is None,
                    unknown_user=(len(history) == 0) if named else None,
                )
            rows.append((str(version), int(hour), json.dumps(counts.to_dict()), unreadable))
        if rows:
            yield pd.DataFrame(rows, columns=["version", "hour", "counts", "unreadable"])


def _counts(data: Mapping[str, Any]) -> Counts:
    return Counts(
        bins={k: [int(x) for x in v] for k, v in data["bins"].items()},
        **{k: int(data[k]) for k in ("requests", "fallbacks", "named_users", "unknown_users")},
        **{k: int(data[k]) for k in ("history_items", "unknown_items")},
    )


def drift(reps: DataFrame, profiles: Mapping[str, VersionProfile], thresholds: Thresholds) -> dict[str, Any]:
    """Per version with a profile: :func:`~sparktf.monitoring.profile.compare` of the whole
    window (``total``) and per hour (``hours``: requests, status, alerts, PSI and JS per
    feature, the rates), against the version's reference.

    Returns:
        ``{version: {"reference": {...}, "total": compare(...), "hours": [...], "unreadable": n}}``
        for every version in ``profiles`` (an idle one has ``total.requests == 0``).
    """
    import functools

    if not profiles:
        return {}
    fn = functools.partial(_count_replies, profiles=dict(profiles))
    parts = (
        reps.where(reps["version"].isin(list(profiles)))
        .select("version", "hour", "user_id", "context", "top1")
        .mapInPandas(fn, "version string, hour long, counts string, unreadable long")
        .collect()
    )
    out: dict[str, Any] = {}
    for version, profile in sorted(profiles.items()):
        profiler = Profiler(profile.reference, profile.item_ids)
        by_hour: dict[int, Counts] = {}
        unreadable = 0
        for row in parts:
            if row["version"] != version:
                continue
            by_hour.setdefault(int(row["hour"]), profiler.new_counts()).add(_counts(json.loads(row["counts"])))
            unreadable += int(row["unreadable"])
        total = profiler.new_counts()
        hours = []
        for hour in sorted(by_hour):
            total.add(by_hour[hour])
            c = compare(profile.reference, by_hour[hour], thresholds)
            hours.append(
                {
                    "t": hour,
                    "hour": hour_label(hour),
                    "requests": c["requests"],
                    "status": c["status"],
                    "alerts": c["alerts"],
                    "psi": {f: c["features"][f]["psi"] for f in FEATURES},
                    "js": {f: c["features"][f]["js"] for f in FEATURES},
                    "rates": {r: v["value"] for r, v in c["rates"].items()},
                }
            )
        ref = profile.reference
        out[version] = {
            "reference": {
                "source": profile.source,
                "model_kind": ref.model_kind,
                "split": ref.split,
                "queries": ref.queries,
                "history_cap": ref.history_cap,
            },
            "total": compare(ref, total, thresholds),
            "hours": hours,
            "unreadable": unreadable,
        }
    return out


# --------------------------------------------------------------------------- the whole report


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _version_key(v: str) -> tuple[int, int, str]:
    return (0, int(v), "") if v.isdigit() else (1, 0, v)


def monitor_report(
    events: DataFrame,
    history_events: DataFrame | None,
    *,
    since: float,
    until: float,
    profiles: Callable[[Sequence[str]], tuple[Mapping[str, VersionProfile], Mapping[str, str]]],
    thresholds: Thresholds,
    features: FeatureConfig,
    event_types: tuple[str, ...],
    skew_sample: float,
    alpha: float = 0.05,
    skew_note: str | None = None,
) -> dict[str, Any]:
    """The report of ``[since, until)``: quality, drift and skew (the JSON of ``report.json``).

    Args:
        events: ``data/live/events`` (:func:`read_live_events`).
        history_events: every validated event for the skew (None: no skew, ``skew_note`` says why).
        profiles: given the model versions that served in the window, their reference
            profiles and, for those without one, why (the caller knows the registry).
        thresholds: ``[monitoring]``'s alert thresholds.
        features, event_types: the feature code's settings (skew).
        skew_sample: the share of replies whose history is compared.
        alpha: the intervals' level.
    """
    reps = replies(events, since, until).cache()
    try:
        versions = sorted({str(r[0]) for r in reps.select("version").distinct().collect()}, key=_version_key)
        models = [v for v in versions if not v.startswith(BASELINE_PREFIX)]
        found, missing = profiles(models)
        report: dict[str, Any] = {
            "generated_at": _iso(time.time()),
            "window": {
                "since": _iso(since),
                "until": _iso(until),
                "since_t": since,
                "until_t": until,
                "hours": round((until - since) / 3600.0, 3),
            },
            "alpha": alpha,
            "thresholds": thresholds.to_dict(),
            "versions": versions,
            # A shopper's clock may lag the server's: actions an hour before the window still count.
            "quality": online_quality(events, reps, alpha, actions_since=since - 3600.0),
            "drift": drift(reps, {v: p for v, p in found.items() if v in models}, thresholds),
            "no_profile": {v: missing.get(v, "no reference profile") for v in models if v not in found},
        }
        if history_events is not None and skew_sample > 0:
            report["skew"] = skew(reps, history_events, features=features, event_types=event_types, sample=skew_sample)
        else:
            report["skew"] = {
                "sample": skew_sample,
                "note": skew_note or ("monitoring.skew_sample = 0" if skew_sample <= 0 else "no batch events"),
            }
    finally:
        reps.unpersist()
    return report
