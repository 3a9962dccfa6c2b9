"""``sparktf experiment estimate`` on Spark: a candidate model's CTR from the logged impressions.

The job, for logs of any size (the driver only ever holds the reward model's
item × position counts and the estimators' moment sums):

1. **Logged slots** (:func:`logged_slots`): the experiment's impressions from the event
   table, each with its ``propensity`` (per shown position, logged by the server:
   :func:`sparktf.serving.experiment.explore_reply`) and a reward of 1 when a click names
   its ``request_id`` and ``position``. Impressions without a propensity (logged before the
   server recorded them, or posted by a client that did not) stop the job with a count,
   their arms, time span and a few request ids: an estimate that silently dropped or
   guessed them would be biased.
2. **The candidate's slates** (:func:`sparktf.serving.replay.candidate_slates`): each logged reply is replayed
   through the candidate on the executors (``mapInPandas``; loaded once per Python worker
   as the server loads a version): the reply's logged user and history (``context``) go
   through the server's own ranking code, with the user's seen items excluded, so the
   candidate ranks exactly as it would have served that request.
3. **The reward model** of DR (:func:`sparktf.experiments.ope.fit_pbm_reward`) from the
   clicks and impressions per item and position.
4. **The estimators**: each slot's terms by :func:`sparktf.experiments.ope.slot_terms`
   (inside ``mapInPandas``, so the formulas live in one place), summed per user and then
   into the moments of :class:`~sparktf.experiments.ope.OpeTotals`.

Why our own code: see :mod:`sparktf.experiments.ope` (obp does not run with the stack, and
it has no Spark path).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.errors import DataError
from sparktf.experiments.assignment import CLICK, IMPRESSION
from sparktf.experiments.ope import TERM_COLUMNS, OpeTotals, PbmReward, fit_pbm_reward, slot_terms
from sparktf.experiments.stats import RatioTotals

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["OFFPOLICY_FILE", "SLATE_SCHEMA", "estimate_on_spark", "logged_slots", "reward_model"]

#: The latest estimate's file in the experiment's folder (the report and the server's page read it).
OFFPOLICY_FILE = "offpolicy.json"
#: The candidate's replay of each logged reply: one row per slot.
SLATE_SCHEMA = "request_id string, position int, target_item string"


def logged_slots(events: DataFrame, experiment: str, arms: Sequence[str] = ()) -> DataFrame:
    """One row per logged impression of ``experiment`` (of ``arms`` only, when given):
    ``request_id, user_id, position, item_id, propensity, context, arm, reward`` (1 when a
    click names the slot, at most 1).

    Raises:
        DataError: the experiment logged no impression, or some lack a propensity (the
            message says how many, of which arms, when, a few request ids, and what to do).
    """
    from pyspark.sql import functions as F

    imp = events.where((F.col("event_type") == IMPRESSION) & (F.col("experiment") == experiment))
    if arms:
        imp = imp.where(F.col("arm").isin(list(arms)))
    imp = imp.select(
        "request_id", "user_id", "position", "item_id", "propensity", "context", "arm", "event_time", "policy"
    )
    if imp.isEmpty():
        raise DataError(
            f"The event table has no impression of experiment {experiment!r}"
            + (f" by the arms {list(arms)}" if arms else "")
            + ", so there is nothing to estimate from.",
            hint="Serve the experiment and send traffic first; check --logged-by names arms of [experiment].",
        )
    missing = imp.where(F.col("propensity").isNull())
    bad = missing.agg(
        F.count(F.lit(1)).alias("n"),
        F.collect_set("arm").alias("arms"),
        F.min("event_time").alias("first"),
        F.max("event_time").alias("last"),
        F.slice(F.collect_set("request_id"), 1, 3).alias("examples"),
    ).first()
    if bad is not None and bad["n"]:
        raise DataError(
            f"{bad['n']} impression(s) of experiment {experiment!r} have no propensity (arms "
            f"{sorted(bad['arms'])}, logged {bad['first']} to {bad['last']}; e.g. request_id "
            f"{', '.join(bad['examples'])}). An off-policy estimate needs the probability with which each "
            "shown item was chosen.",
            hint="Serve with this version of sparktf: it logs a propensity with every impression (1 for an arm "
            "that ranks deterministically; set [[experiment.arms]] exploration = 'epsilon_greedy' or "
            "'plackett_luce' to explore). Then estimate from the impressions logged since, under a new "
            "experiment name.",
        )
    clicks = (
        events.where((F.col("event_type") == CLICK) & F.col("request_id").isNotNull() & F.col("position").isNotNull())
        .select("request_id", "position")
        .distinct()
        .withColumn("reward", F.lit(1.0))
    )
    return imp.join(clicks, ["request_id", "position"], "left").fillna(0.0, subset=["reward"])


def reward_model(slots: DataFrame) -> PbmReward:
    """The DR reward model from the logged slots' clicks per item and position."""
    from pyspark.sql import functions as F

    rows = slots.groupBy("item_id", "position").agg(F.sum("reward").alias("c"), F.count(F.lit(1)).alias("n")).collect()
    by_pos: dict[int, list[float]] = {}
    by_item: dict[str, dict[int, tuple[float, float]]] = {}
    for r in rows:
        k = int(r["position"])
        acc = by_pos.setdefault(k, [0.0, 0.0])
        acc[0] += float(r["c"])
        acc[1] += float(r["n"])
        by_item.setdefault(str(r["item_id"]), {})[k] = (float(r["c"]), float(r["n"]))
    return fit_pbm_reward({k: (v[0], v[1]) for k, v in by_pos.items()}, by_item)


def _terms(frames: Iterator[pd.DataFrame], *, model: PbmReward, clip: float) -> Iterator[pd.DataFrame]:
    import pandas as pd

    for frame in frames:
        if frame.empty:
            continue
        target = frame["target_item"].fillna("").astype(str).to_numpy()
        logged = frame["item_id"].astype(str).to_numpy()
        pos = frame["position"].to_numpy()
        where = [f"request {r} position {p}" for r, p in zip(frame["request_id"], pos, strict=True)]
        has_target = target != ""
        terms = slot_terms(
            frame["propensity"].to_numpy(dtype=np.float64),
            frame["reward"].to_numpy(dtype=np.float64),
            (logged == target).astype(np.float64),
            model.q(list(logged), pos),
            np.where(has_target, model.q(list(target), pos), 0.0),
            clip=clip,
            where=where,
        )
        out = pd.DataFrame(terms)
        out.insert(0, "user_id", frame["user_id"].astype(str).to_numpy())
        yield out


def estimate_on_spark(slots: DataFrame, slates: DataFrame, model: PbmReward, clip: float) -> OpeTotals:
    """The estimators' moment sums over users (what :func:`sparktf.experiments.ope.estimates_from_totals` reads)."""
    from pyspark.sql import functions as F

    joined = slots.join(slates, ["request_id", "position"], "left").select(
        "request_id", "user_id", "position", "item_id", "propensity", "reward", "target_item"
    )
    schema = "user_id string, " + ", ".join(f"{c} double" for c in TERM_COLUMNS)
    fn = functools.partial(_terms, model=model, clip=float(clip))
    terms = joined.mapInPandas(fn, schema)
    per_user = terms.groupBy("user_id").agg(*[F.sum(c).alias(c) for c in TERM_COLUMNS], F.max("w").alias("max_w"))
    pairs = {"ips": ("wr", "slots"), "snips": ("wr", "w"), "dr": ("dr", "slots")}
    aggs = [F.count(F.lit(1)).alias("users"), F.max("max_w").alias("max_w")]
    aggs += [F.sum(c).alias(f"s_{c}") for c in TERM_COLUMNS]
    for name, (y, x) in pairs.items():
        aggs += [
            F.sum(F.col(y) * F.col(y)).alias(f"{name}_yy"),
            F.sum(F.col(x) * F.col(x)).alias(f"{name}_xx"),
            F.sum(F.col(x) * F.col(y)).alias(f"{name}_xy"),
        ]
    row = per_user.agg(*aggs).first()
    assert row is not None
    s: Mapping[str, Any] = row.asDict()
    users = int(s["users"] or 0)

    def num(key: str) -> float:
        return float(s[key] or 0.0)

    ratios = {
        name: RatioTotals(users, num(f"s_{y}"), num(f"s_{x}"), num(f"{name}_yy"), num(f"{name}_xx"), num(f"{name}_xy"))
        for name, (y, x) in pairs.items()
    }
    return OpeTotals(
        ratios=ratios,
        slots=num("s_slots"),
        sum_w=num("s_w"),
        sum_w_sq=num("s_w_sq"),
        max_w=num("max_w"),
        clipped=num("s_clipped"),
        matched=num("s_matched"),
    )
