"""``sparktf experiment report``: the event table turned into per-arm results, lifts, checks and a decision.

Inputs: ``data/live/events`` (the stream's validated events: the server's ``impression``
events carry ``experiment``, ``arm``, ``request_id`` and ``position``; the shoppers'
``click``, ``add_to_cart`` and ``purchase`` events carry the ``request_id`` of the reply
they came from), and the server's ``/metrics`` for the guardrails.

1. Spark joins each reply's impressions with the events that name its ``request_id``,
   counts per user, arm and time bucket (impressions, clicks, carts, purchases), and sums
   the user-level moments per arm and bucket (:func:`arm_moments`): the driver gets
   ``arms × buckets`` rows whatever the number of users.
2. Per arm, CTR, add-to-cart and purchase rate are ratio metrics over users
   (clicks / impressions summed per user), with delta-method intervals; each arm's lift
   against the control comes with its interval and p-value
   (:mod:`sparktf.experiments.stats`): users are the randomized unit, and one user's
   clicks are correlated, so a per-impression binomial interval would be too narrow.
3. The sample-ratio test compares the users per arm with the arms' weights; a user seen
   in two arms is counted and reported (the assignment changed during the run).
4. Guardrails: per arm, the share of failed ``:recommend`` requests and the p99 latency
   from the server's ``sparktf_experiment_*`` metrics.
5. :func:`decide` turns it into ``promote`` / ``keep`` / ``stop`` with the configured rule.

Why our own code: Evidently and the experiment services compute metrics over a frame;
none joins impressions to clicks by reply, computes user-level ratio intervals, or reads
our server's guardrail metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparktf.experiments.assignment import CLICK, IMPRESSION, Assignment
from sparktf.experiments.stats import Lift, RatioTotals, lift, ratio_estimate, sample_ratio_test

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "ACTIONS",
    "METRICS",
    "DecisionRule",
    "Guardrail",
    "Moments",
    "arm_moments",
    "arm_results",
    "ctr_chart",
    "decide",
    "guardrails_from_metrics",
    "order_agreement",
    "read_events",
    "to_json",
    "user_moments",
]

#: The ratio metrics of the report: name -> the per-user numerator column (denominator: impressions).
METRICS: dict[str, str] = {"ctr": "clicks", "add_to_cart_rate": "carts", "purchase_rate": "purchases"}
#: The actions a reply leads to, counted by its ``request_id``: event type -> count column.
ACTIONS: dict[str, str] = {CLICK: "clicks", "add_to_cart": "carts", "purchase": "purchases"}


def read_events(spark: SparkSession, path: str) -> DataFrame:
    """``data/live/events`` with the live-event schema (columns that older batches lack read as null)."""
    from sparktf.data.schema import LIVE_EVENT_DDL

    return spark.read.schema(LIVE_EVENT_DDL).parquet(path)


@dataclass(frozen=True)
class Moments:
    """What the driver gets from Spark: per arm and time bucket, the user-level moment sums of
    each metric over the users' cumulative counts up to the bucket's end.

    Attributes:
        table: one row per (arm, bucket ``b``): ``users``, ``requests``, ``impressions``,
            ``impressions_sq`` and, per numerator ``c`` of :data:`METRICS`, ``c``, ``c_sq``,
            ``c_x`` (Σ c², Σ c · impressions over users).
        buckets: the number of buckets; bucket ``b`` ends at ``(b + 1) * bucket_s`` seconds
            after the first impression.
        bucket_s: the width of a bucket, seconds.
        users_in_several_arms: users whose impressions came from more than one arm.
    """

    table: pd.DataFrame
    buckets: int
    bucket_s: float
    users_in_several_arms: int

    def totals(self, arm: str, numerator: str, bucket: int | None = None) -> RatioTotals:
        """The arm's :class:`RatioTotals` of ``numerator / impressions`` up to ``bucket`` (the end by default)."""
        b = self.buckets - 1 if bucket is None else bucket
        rows = self.table[(self.table["arm"] == arm) & (self.table["b"] == b)]
        if rows.empty:
            return RatioTotals(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        r = rows.iloc[0]
        return RatioTotals(
            users=int(r["users"]),
            sum_y=float(r[numerator]),
            sum_x=float(r["impressions"]),
            sum_yy=float(r[f"{numerator}_sq"]),
            sum_xx=float(r["impressions_sq"]),
            sum_xy=float(r[f"{numerator}_x"]),
        )

    def count(self, arm: str, column: str) -> int:
        rows = self.table[(self.table["arm"] == arm) & (self.table["b"] == self.buckets - 1)]
        return 0 if rows.empty else int(rows.iloc[0][column])


def arm_moments(events: DataFrame, experiment: str, buckets: int = 20) -> Moments:
    """Join each reply's impressions with the actions that name its ``request_id``, and sum
    per arm and time bucket on Spark (the driver gets ``arms × buckets`` rows, whatever the
    number of users).

    The experiment's span (first to last impression) is cut into ``buckets`` buckets; a
    reply's actions count in the reply's bucket. For the curve, each user's counts are
    accumulated up to each bucket before the moments are summed over users.
    """
    from pyspark.sql import functions as F

    imp = events.where((F.col("event_type") == IMPRESSION) & (F.col("experiment") == experiment))
    replies = imp.groupBy("request_id").agg(
        F.first("arm").alias("arm"),
        F.first("user_id").alias("user_id"),
        F.count(F.lit(1)).alias("impressions"),
        F.min(F.unix_micros("event_time")).alias("t"),
    )
    acts = (
        events.where(F.col("event_type").isin(list(ACTIONS)) & F.col("request_id").isNotNull())
        .groupBy("request_id")
        .agg(*[F.sum((F.col("event_type") == t).cast("long")).alias(c) for t, c in ACTIONS.items()])
    )
    joined = replies.join(acts, "request_id", "left").fillna(0, subset=list(ACTIONS.values())).cache()
    try:
        span = joined.agg(F.min("t"), F.max("t")).first()
        t0 = span[0] if span is not None and span[0] is not None else 0
        t1 = span[1] if span is not None and span[1] is not None else 0
        bucket_s = max((t1 - t0) / 1e6 / buckets, 1.0)
        bucket = F.least(F.floor((F.col("t") - F.lit(t0)) / F.lit(bucket_s * 1e6)), F.lit(buckets - 1)).cast("int")
        counts = ["requests", "impressions", *ACTIONS.values()]
        per = (
            joined.withColumn("bucket", bucket)
            .groupBy("arm", "user_id", "bucket")
            .agg(
                F.count(F.lit(1)).alias("requests"),
                F.sum("impressions").alias("impressions"),
                *[F.sum(c).alias(c) for c in ACTIONS.values()],
            )
        )
        several_row = per.groupBy("user_id").agg(F.countDistinct("arm").alias("n")).where("n > 1").count()
        grid = events.sparkSession.range(buckets).withColumnRenamed("id", "b")
        cumulative = (
            per.join(F.broadcast(grid), F.col("bucket") <= F.col("b"))
            .groupBy("arm", "user_id", "b")
            .agg(*[F.sum(c).alias(c) for c in counts])
        )
        moments = user_moments(cumulative, ["arm", "b"]).toPandas()
    finally:
        joined.unpersist()
    return Moments(moments, buckets, bucket_s, int(several_row))


def user_moments(per_user: DataFrame, keys: Sequence[str]) -> DataFrame:
    """User-level moment sums (:class:`RatioTotals`' columns) of each numerator over impressions,
    per ``keys``: one row per user in, one row per key out (the experiment report's and the
    monitor report's one aggregation)."""
    from pyspark.sql import functions as F

    x = F.col("impressions")
    return per_user.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("users"),
        F.sum("requests").alias("requests"),
        F.sum(x).alias("impressions"),
        F.sum(x * x).alias("impressions_sq"),
        *[
            agg
            for c in ACTIONS.values()
            for agg in (
                F.sum(c).alias(c),
                F.sum(F.col(c) * F.col(c)).alias(f"{c}_sq"),
                F.sum(F.col(c) * x).alias(f"{c}_x"),
            )
        ],
    )


@dataclass(frozen=True)
class Guardrail:
    """An arm's serving health from the server's metrics (None: not known)."""

    requests: int | None = None
    error_rate: float | None = None
    p99_latency_ms: float | None = None


@dataclass(frozen=True)
class DecisionRule:
    """``[experiment]``'s rule (see :func:`decide`)."""

    control: str
    alpha: float
    srm_alpha: float
    min_users_per_arm: int
    min_lift: float
    max_error_rate: float
    max_p99_latency_ms: float


@dataclass
class ArmResult:
    """One arm's numbers."""

    arm: str
    users: int
    requests: int
    impressions: int
    clicks: int
    carts: int
    purchases: int
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    lift: dict[str, dict[str, float]] = field(default_factory=dict)
    guardrail: Guardrail = field(default_factory=Guardrail)


def arm_results(
    moments: Moments, assignment: Assignment, alpha: float, guardrails: Mapping[str, Guardrail]
) -> dict[str, Any]:
    """Per arm results, lifts against the control, the sample-ratio test and the cumulative
    CTR curve, from :func:`arm_moments`' sums (pure: no Spark)."""
    arms_in_config = [a.name for a in assignment.arms]
    results: dict[str, ArmResult] = {}
    for name in arms_in_config:
        res = ArmResult(
            arm=name,
            users=moments.totals(name, "clicks").users,
            requests=moments.count(name, "requests"),
            impressions=moments.count(name, "impressions"),
            clicks=moments.count(name, "clicks"),
            carts=moments.count(name, "carts"),
            purchases=moments.count(name, "purchases"),
            guardrail=guardrails.get(name, Guardrail()),
        )
        for metric, column in METRICS.items():
            est = ratio_estimate(moments.totals(name, column), alpha)
            res.rates[metric] = {"value": est.value, "se": est.se, "ci_low": est.ci_low, "ci_high": est.ci_high}
        results[name] = res
    control = assignment.control
    for name, res in results.items():
        if name == control:
            continue
        for metric, column in METRICS.items():
            res.lift[metric] = _lift_dict(lift(moments.totals(name, column), moments.totals(control, column), alpha))
    # Every arm against every other on CTR (the lifts above are against the control only):
    # the decision compares a winner with the champion's arm, and the order check uses them.
    pairwise: dict[str, dict[str, dict[str, float]]] = {}
    for a in arms_in_config:
        for b in arms_in_config:
            if a != b:
                pairwise.setdefault(a, {})[b] = _lift_dict(
                    lift(moments.totals(a, "clicks"), moments.totals(b, "clicks"), alpha)
                )
    shares = assignment.shares
    weighted = [a for a in arms_in_config if shares[a] > 0 or results[a].users > 0]
    srm = sample_ratio_test([results[a].users for a in weighted], [shares[a] for a in weighted])
    seen = set(moments.table["arm"].dropna()) if len(moments.table) else set()
    return {
        "experiment": assignment.experiment,
        "control": control,
        "alpha": alpha,
        "arms": {name: _arm_dict(r) for name, r in results.items()},
        "pairwise_ctr": pairwise,
        "sample_ratio": {
            "arms": weighted,
            "observed": list(srm.observed),
            "expected": list(srm.expected),
            "chi2": srm.chi2,
            "p_value": srm.p_value,
        },
        "users_in_several_arms": moments.users_in_several_arms,
        "unknown_arms": sorted(seen - set(arms_in_config)),
        "curve": cumulative_ctr(moments, arms_in_config, alpha),
    }


def _lift_dict(lf: Lift) -> dict[str, float]:
    return {
        "absolute": lf.absolute,
        "absolute_ci_low": lf.absolute_ci[0],
        "absolute_ci_high": lf.absolute_ci[1],
        "relative": lf.relative,
        "relative_ci_low": lf.relative_ci[0],
        "relative_ci_high": lf.relative_ci[1],
        "p_value": lf.p_value,
    }


def _arm_dict(r: ArmResult) -> dict[str, Any]:
    return {
        "users": r.users,
        "requests": r.requests,
        "impressions": r.impressions,
        "clicks": r.clicks,
        "carts": r.carts,
        "purchases": r.purchases,
        "rates": r.rates,
        "lift": r.lift,
        "guardrail": {
            "requests": r.guardrail.requests,
            "error_rate": r.guardrail.error_rate,
            "p99_latency_ms": r.guardrail.p99_latency_ms,
        },
    }


def cumulative_ctr(moments: Moments, arms: Sequence[str], alpha: float) -> dict[str, list[dict[str, float]]]:
    """Per arm, at the end of each time bucket: the CTR of everything so far and its interval."""
    out: dict[str, list[dict[str, float]]] = {}
    for arm in arms:
        points = []
        for b in range(moments.buckets):
            t = moments.totals(arm, "clicks", b)
            if t.users < 2:
                continue
            est = ratio_estimate(t, alpha)
            points.append(
                {
                    "t_s": (b + 1) * moments.bucket_s,
                    "ctr": est.value,
                    "ci_low": est.ci_low,
                    "ci_high": est.ci_high,
                    "users": t.users,
                }
            )
        out[arm] = points
    return out


# --------------------------------------------------------------------------- guardrails


def guardrails_from_metrics(text: str, experiment: str) -> dict[str, Guardrail]:
    """Per arm error rate and p99 latency (ms, the upper edge of the histogram bucket the
    99th percentile falls in: conservative) from a ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("experiment") != experiment:
                continue
            arm = labels.get("arm", "")
            if sample.name == "sparktf_experiment_requests_total":
                counts.setdefault(arm, {})[labels.get("outcome", "")] = sample.value
            elif sample.name == "sparktf_experiment_request_latency_seconds_bucket":
                buckets.setdefault(arm, []).append((float(labels["le"]), sample.value))
    out = {}
    for arm in set(counts) | set(buckets):
        ok, bad = counts.get(arm, {}).get("ok", 0.0), counts.get(arm, {}).get("error", 0.0)
        total = ok + bad
        p99 = None
        edges = sorted(buckets.get(arm, []))
        if edges and edges[-1][1] > 0:
            need = 0.99 * edges[-1][1]
            p99 = next((le for le, c in edges if c >= need), math.inf) * 1000.0
        out[arm] = Guardrail(int(total), bad / total if total else None, p99)
    return out


# --------------------------------------------------------------------------- the decision


def decide(
    report: Mapping[str, Any], rule: DecisionRule, arm_models: Mapping[str, str], incumbent: str | None = None
) -> dict[str, Any]:
    """``promote`` / ``keep`` / ``stop`` and why (pure).

    In this order: a sample-ratio mismatch (p < ``srm_alpha``) or a user in several arms
    stops the experiment (the split is broken; nothing it says can be trusted); a
    challenger whose guardrail fails (error rate or p99 latency above the limit) is
    stopped; until every arm has ``min_users_per_arm`` users, or while a guardrail is
    unknown, the decision is ``keep``; then the challenger with the highest CTR lift
    whose interval's lower bound is above ``min_lift`` is promoted, provided it serves a
    registry model (a baseline cannot be promoted), it is not the ``incumbent`` (the arm
    that serves the alias a promotion would move), and its CTR lift over the incumbent's arm
    (when there is one) is above ``min_lift`` too; when every challenger's interval is
    wholly below 0 the experiment stops; otherwise ``keep`` (not conclusive yet).
    """
    reasons: list[str] = []
    arms = report["arms"]
    srm = report["sample_ratio"]
    if srm["p_value"] < rule.srm_alpha:
        return {
            "decision": "stop",
            "arm": None,
            "reasons": [
                f"sample ratio mismatch: users per arm {dict(zip(srm['arms'], srm['observed'], strict=True))} "
                f"against the weights' {[round(e, 1) for e in srm['expected']]} (p = {srm['p_value']:.2g} < "
                f"experiment.srm_alpha = {rule.srm_alpha}); find why before reading any lift"
            ],
        }
    if report.get("users_in_several_arms"):
        return {
            "decision": "stop",
            "arm": None,
            "reasons": [
                f"{report['users_in_several_arms']} user(s) were served by several arms (the salt or arms changed)"
            ],
        }
    challengers = [a for a in arms if a != rule.control]
    for name in challengers:
        g = arms[name]["guardrail"]
        if g["error_rate"] is not None and g["error_rate"] > rule.max_error_rate:
            return {
                "decision": "stop",
                "arm": name,
                "reasons": [
                    f"arm {name}: error rate {g['error_rate']:.2%} > experiment.max_error_rate {rule.max_error_rate:.2%}"
                ],
            }
        if g["p99_latency_ms"] is not None and g["p99_latency_ms"] > rule.max_p99_latency_ms:
            return {
                "decision": "stop",
                "arm": name,
                "reasons": [
                    f"arm {name}: p99 latency ≤ {g['p99_latency_ms']:.0f} ms bucket > experiment.max_p99_latency_ms "
                    f"{rule.max_p99_latency_ms:.0f}"
                ],
            }
    small = [a for a in arms if arms[a]["users"] < rule.min_users_per_arm]
    if small:
        reasons.append(
            "too few users: "
            + ", ".join(f"{a} {arms[a]['users']}" for a in small)
            + f" < experiment.min_users_per_arm {rule.min_users_per_arm}"
        )
    unknown = [a for a in arms if arms[a]["guardrail"]["error_rate"] is None]
    if unknown:
        reasons.append(f"guardrails unknown for {', '.join(unknown)} (the server's /metrics could not be read)")
    if reasons:
        return {"decision": "keep", "arm": None, "reasons": reasons}
    winners = [
        (arms[a]["lift"]["ctr"]["relative"], a)
        for a in challengers
        if arms[a]["lift"]["ctr"]["relative_ci_low"] > rule.min_lift
    ]
    if winners:
        _, best = max(winners)
        lf = arms[best]["lift"]["ctr"]
        why = (
            f"arm {best}: CTR lift {lf['relative']:+.1%} [{lf['relative_ci_low']:+.1%}, {lf['relative_ci_high']:+.1%}] "
            f"over {rule.control}, lower bound above experiment.min_lift {rule.min_lift:+.1%}"
        )
        if arm_models.get(best, "").startswith(("popular", "cooccurrence")):
            return {"decision": "keep", "arm": best, "reasons": [why, f"arm {best} is a baseline: nothing to promote"]}
        if best == incumbent:
            return {"decision": "keep", "arm": best, "reasons": [why, f"arm {best} serves the champion already"]}
        if incumbent is not None and incumbent in arms and incumbent != rule.control:
            vs = report["pairwise_ctr"][best][incumbent]
            versus = (
                f"arm {best} against the champion's arm {incumbent}: CTR lift {vs['relative']:+.1%} "
                f"[{vs['relative_ci_low']:+.1%}, {vs['relative_ci_high']:+.1%}]"
            )
            if not vs["relative_ci_low"] > rule.min_lift:
                return {
                    "decision": "keep",
                    "arm": best,
                    "reasons": [
                        why,
                        versus + f", not above experiment.min_lift {rule.min_lift:+.1%}: keep the champion",
                    ],
                }
            return {"decision": "promote", "arm": best, "reasons": [why, versus]}
        return {"decision": "promote", "arm": best, "reasons": [why]}
    if challengers and all(arms[a]["lift"]["ctr"]["relative_ci_high"] < 0 for a in challengers):
        return {
            "decision": "stop",
            "arm": None,
            "reasons": ["every challenger's CTR is significantly below the control's"],
        }
    return {"decision": "keep", "arm": None, "reasons": ["no challenger's CTR lift is conclusive yet"]}


def ctr_chart(curve: Mapping[str, Sequence[Mapping[str, float]]], path: str, title: str) -> None:
    """A PNG of each arm's cumulative CTR over the experiment's time with its interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for arm, points in curve.items():
        if not points:
            continue
        t = [p["t_s"] / 60.0 for p in points]
        ax.plot(t, [p["ctr"] for p in points], label=arm)
        ax.fill_between(t, [p["ci_low"] for p in points], [p["ci_high"] for p in points], alpha=0.2)
    ax.set_xlabel("minutes since the first impression")
    ax.set_ylabel("cumulative CTR (clicks / impressions)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def order_agreement(
    online: Mapping[str, float],
    offline: Mapping[str, float | None],
    pairwise: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> dict[str, Any]:
    """Whether the arms ranked by online CTR come in the order of an offline metric.

    Returns the two orders (best first; arms without an offline value are left out),
    ``agrees`` (the same order; None with fewer than two arms), and, given the pairwise CTR
    comparisons, ``contradictions``: the pairs whose online difference is significant
    (its interval excludes 0) and opposite to the offline order, and ``ties``: the pairs the
    offline metric orders but the online data cannot tell apart.
    """
    arms = [a for a in online if offline.get(a) is not None and online[a] == online[a]]
    by_online = sorted(arms, key=lambda a: -online[a])
    by_offline = sorted(arms, key=lambda a: -float(offline[a] or 0.0))
    contradictions, ties = [], []
    if pairwise is not None:
        for i, better in enumerate(by_offline):
            for worse in by_offline[i + 1 :]:
                cmp = pairwise.get(better, {}).get(worse)
                if cmp is None:
                    continue
                if cmp["absolute_ci_high"] < 0:
                    contradictions.append([better, worse])
                elif cmp["absolute_ci_low"] <= 0:
                    ties.append([better, worse])
    return {
        "by_online_ctr": by_online,
        "by_offline": by_offline,
        "agrees": (by_online == by_offline) if len(arms) >= 2 else None,
        "contradictions": contradictions,
        "ties": ties,
    }


def to_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (NaN and infinity as null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report), indent=2, sort_keys=True)
