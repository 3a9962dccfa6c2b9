"""Off-policy estimates of a candidate policy's CTR from logged impressions: IPS, SNIPS, DR.

The log is one row per shown slot: the item the logging policy put at position ``k`` of a
reply, the probability ``p`` with which it chose that item *there* (its per-slot marginal,
logged by the server: :mod:`sparktf.experiments.exploration`), and whether it was clicked.
Under the position-based click model a click at ``k`` depends only on the examination of
``k`` and on the (user, item) pair, so each slot is a round of its own (the position-wise
estimators of obp's ``obp.ope``, Saito et al. 2020) and the value estimated is the
candidate's CTR = clicks per shown item. With ``π(a at k | x)`` the candidate's probability
of that item at that slot (1 or 0 for a deterministic ranker) and ``w = π / p``::

    IPS    V = Σ w r / Σ 1                    (unbiased when p > 0 wherever π > 0)
    SNIPS  V = Σ w r / Σ w                    (self-normalised: biased, consistent, lower variance)
    DR     V = Σ [q̂π + w (r - q̂(a, k))] / Σ 1  (q̂π = Σ_a π(a at k | x) q̂(a, k); unbiased if p or q̂ is right)

with sums over slots. Clipping ``w → min(w, clip)`` trades a downward bias for variance;
the effective sample size ``(Σ w)² / Σ w²`` says how many slots the estimate really rests on.

Every estimate is a ratio of sums over *units* (users): clicks of one user are correlated,
so its confidence interval is the delta method's over units
(:func:`sparktf.experiments.stats.ratio_estimate`), exactly as the A/B report's.
A log whose rows are independent (the Open Bandit Dataset has no user ids) gives each row
its own unit.

The reward model of DR is the position-based one fitted on the same logs
(:func:`fit_pbm_reward`): ``q̂(a, k) = θ̂_k γ̂_a`` with ``θ̂_k`` the CTR of position ``k``
relative to all positions and ``γ̂_a`` the item's clicks over its examination-weighted
impressions, shrunk towards the overall CTR by :data:`PRIOR_IMPRESSIONS` impressions.
It is context-free: DR stays unbiased with the logged propensities whatever q̂ is, and a
q̂ this simple only lowers the variance where items repeat.

Why our own code: obp 0.4.1 (the Open Bandit Pipeline, whose formulas these are) resolves
with the stack but does not run: ``obp.ope`` imports torch, and its dataset code calls
``DataFrame.drop(col, 1)`` and ``np.int`` (TypeError on pandas 2, AttributeError on numpy 2);
its IPS has no clipping. The estimators are a few lines; what is ours is the per-unit
variance, the Spark aggregation (:func:`slot_terms` runs inside ``mapInPandas``, the sums
are a ``groupBy``), and the checks on the log. ``tests/unit/test_ope.py`` checks them
against obp's formulas written out, and BENCHMARKS.md against obp's published result on
its own data (README: BernoulliTS / Random = 1.198 by IPW).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sparktf.errors import DataError
from sparktf.experiments.stats import RatioTotals, ratio_estimate

__all__ = [
    "ESTIMATORS",
    "PRIOR_IMPRESSIONS",
    "TERM_COLUMNS",
    "OpeEstimate",
    "OpeTotals",
    "PbmReward",
    "estimate",
    "estimates_from_totals",
    "fit_pbm_reward",
    "reward_from_log",
    "slot_terms",
    "totals_from_units",
]

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")
#: How many impressions at the overall CTR an item's own clicks are shrunk towards (q̂ of DR).
PRIOR_IMPRESSIONS = 20.0
#: The per-slot columns :func:`slot_terms` returns, summed per unit by the Spark job.
TERM_COLUMNS: tuple[str, ...] = ("slots", "w", "w_sq", "wr", "dr", "clipped", "matched")


@dataclass(frozen=True)
class PbmReward:
    """``q̂(a, k) = theta[k - 1] * gamma.get(a, base)`` (positions are 1-based).

    Attributes:
        theta: relative examination of positions 1..K (CTR of the position / overall CTR).
        gamma: per item, its clicks over its examination-weighted impressions, shrunk.
        base: the overall CTR, the γ of an item the log never showed.
    """

    theta: tuple[float, ...]
    gamma: Mapping[str, float]
    base: float

    def q(self, items: Sequence[Any], positions: npt.ArrayLike) -> np.ndarray:
        """q̂ of each (item, 1-based position); positions beyond the fitted ones use the last θ."""
        pos = np.asarray(positions, dtype=np.int64)
        th = np.asarray(self.theta or (1.0,), dtype=np.float64)
        idx = np.clip(pos - 1, 0, th.size - 1)
        g = np.fromiter((self.gamma.get(str(a), self.base) for a in items), dtype=np.float64, count=len(items))
        return np.asarray(th[idx] * g, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"theta": list(self.theta), "base": self.base, "items": len(self.gamma)}


def fit_pbm_reward(
    position_counts: Mapping[int, tuple[float, float]],
    item_position_counts: Mapping[str, Mapping[int, tuple[float, float]]],
) -> PbmReward:
    """Fit the position-based reward model from click and impression counts.

    Args:
        position_counts: 1-based position -> (clicks, impressions).
        item_position_counts: item -> position -> (clicks, impressions).

    Returns:
        The model; with no click at all every q̂ is 0.
    """
    clicks = sum(c for c, _ in position_counts.values())
    shown = sum(n for _, n in position_counts.values())
    base = clicks / shown if shown else 0.0
    top = max(position_counts, default=0)
    theta = []
    for k in range(1, top + 1):
        c, n = position_counts.get(k, (0.0, 0.0))
        theta.append((c / n) / base if n and base else 1.0)
    gamma = {}
    for item, by_pos in item_position_counts.items():
        c = sum(v[0] for v in by_pos.values())
        exposure = sum(v[1] * (theta[k - 1] if 0 < k <= top else 1.0) for k, v in by_pos.items())
        gamma[str(item)] = (c + PRIOR_IMPRESSIONS * base) / (exposure + PRIOR_IMPRESSIONS)
    return PbmReward(theta=tuple(theta), gamma=gamma, base=base)


def reward_from_log(items: Sequence[Any], positions: npt.ArrayLike, rewards: npt.ArrayLike) -> PbmReward:
    """:func:`fit_pbm_reward` from a log in memory (one entry per shown slot)."""
    pos = np.asarray(positions, dtype=np.int64)
    rew = np.asarray(rewards, dtype=np.float64)
    by_pos: dict[int, list[float]] = {}
    by_item: dict[str, dict[int, list[float]]] = {}
    for a, k, r in zip(items, pos.tolist(), rew.tolist(), strict=True):
        acc = by_pos.setdefault(k, [0.0, 0.0])
        acc[0] += r
        acc[1] += 1.0
        cell = by_item.setdefault(str(a), {}).setdefault(k, [0.0, 0.0])
        cell[0] += r
        cell[1] += 1.0
    return fit_pbm_reward(
        {k: (v[0], v[1]) for k, v in by_pos.items()},
        {a: {k: (v[0], v[1]) for k, v in d.items()} for a, d in by_item.items()},
    )


def slot_terms(
    pscore: npt.ArrayLike,
    reward: npt.ArrayLike,
    target_prob: npt.ArrayLike,
    q_logged: npt.ArrayLike | None = None,
    q_target: npt.ArrayLike | None = None,
    *,
    clip: float = math.inf,
    where: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Each slot's share of every estimator (the one place the formulas are written).

    Args:
        pscore: the logging policy's probability of the logged item at its slot, in (0, 1].
        reward: 1 for a click on it, else 0 (any finite number is allowed).
        target_prob: the candidate's probability of the logged item at that slot, in [0, 1].
        q_logged: q̂ of the logged item at its slot (DR); None: 0.
        q_target: Σ_a π(a at k) q̂(a, k), the candidate's expected q̂ at the slot (DR); None: 0.
        clip: weights above it are cut to it (inf: no clipping).
        where: a name for each row (e.g. ``request r1 position 3``), for the error message.

    Returns:
        Arrays :data:`TERM_COLUMNS`: ``slots`` (1), ``w`` (clipped weight), ``w_sq``, ``wr``
        (w r), ``dr`` (the DR term), ``clipped`` (1 where clipping cut w), ``matched`` (1 where π > 0).

    Raises:
        DataError: a propensity outside (0, 1] or NaN, a target probability outside [0, 1],
            a non-finite reward, or arrays of different lengths; the message names the first
            bad row and what to do.
    """
    p = np.asarray(pscore, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    t = np.asarray(target_prob, dtype=np.float64)
    n = p.shape[0] if p.ndim == 1 else -1
    ql = np.zeros(max(n, 0)) if q_logged is None else np.asarray(q_logged, dtype=np.float64)
    qt = np.zeros(max(n, 0)) if q_target is None else np.asarray(q_target, dtype=np.float64)
    if n < 0 or any(a.shape != (n,) for a in (r, t, ql, qt)):
        raise DataError(
            f"slot_terms needs 1-D arrays of one length; got shapes pscore {p.shape}, reward {r.shape}, "
            f"target_prob {t.shape}, q_logged {ql.shape}, q_target {qt.shape}."
        )
    if where is not None and len(where) != n:
        raise DataError(f"where names {len(where)} rows for {n} logged slots.")
    if not clip > 0:
        raise DataError(f"The weight clip must be > 0 (inf for none); got {clip}.", hint="Set experiment.ope_clip.")

    def name(i: int) -> str:
        return where[i] if where is not None else f"row {i}"

    bad = np.flatnonzero(~((p > 0) & (p <= 1)))
    if bad.size:
        raise DataError(
            f"{bad.size} logged slot(s) have a propensity outside (0, 1]; the first is {name(int(bad[0]))} "
            f"with {float(p[bad[0]])!r}. A shown item has a probability > 0 of having been shown.",
            hint="The log is damaged or was written by another program; estimate from impressions the server logged.",
        )
    bad = np.flatnonzero(~((t >= 0) & (t <= 1)))
    if bad.size:
        raise DataError(f"The candidate's probability {float(t[bad[0]])!r} at {name(int(bad[0]))} is outside [0, 1].")
    bad = np.flatnonzero(~(np.isfinite(r) & np.isfinite(ql) & np.isfinite(qt)))
    if bad.size:
        raise DataError(f"A reward or q̂ at {name(int(bad[0]))} is not finite.")
    raw = t / p
    w = np.minimum(raw, clip)
    return {
        "slots": np.ones(n),
        "w": w,
        "w_sq": w * w,
        "wr": w * r,
        "dr": qt + w * (r - ql),
        "clipped": (raw > w).astype(np.float64),
        "matched": (t > 0).astype(np.float64),
    }


@dataclass(frozen=True)
class OpeTotals:
    """Per estimator, the unit-level moment sums of its ratio, and the weight diagnostics.

    What one Spark ``groupBy(unit)`` then one ``agg`` computes; :func:`estimates_from_totals`
    turns it into estimates.
    """

    ratios: Mapping[str, RatioTotals]
    slots: float
    sum_w: float
    sum_w_sq: float
    max_w: float
    clipped: float
    matched: float


def totals_from_units(units: Mapping[str, npt.ArrayLike], max_w: float) -> OpeTotals:
    """:class:`OpeTotals` from per-unit sums of :data:`TERM_COLUMNS` (one array entry per unit)."""
    u = {c: np.asarray(units[c], dtype=np.float64) for c in TERM_COLUMNS}
    return OpeTotals(
        ratios={
            "ips": RatioTotals.of(u["wr"], u["slots"]),
            "snips": RatioTotals.of(u["wr"], u["w"]),
            "dr": RatioTotals.of(u["dr"], u["slots"]),
        },
        slots=float(u["slots"].sum()),
        sum_w=float(u["w"].sum()),
        sum_w_sq=float(u["w_sq"].sum()),
        max_w=float(max_w),
        clipped=float(u["clipped"].sum()),
        matched=float(u["matched"].sum()),
    )


@dataclass(frozen=True)
class OpeEstimate:
    """One estimator's estimate of the candidate's CTR.

    Attributes:
        estimator: one of :data:`ESTIMATORS`.
        value: the estimated CTR; NaN when no logged slot matches the candidate (no support).
        se: its standard error over units.
        ci_low, ci_high: the two-sided ``1 - alpha`` interval.
    """

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float | str]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "se": self.se,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


def estimates_from_totals(totals: OpeTotals, alpha: float = 0.05) -> dict[str, Any]:
    """Each estimator's estimate and interval, and the log's diagnostics.

    Raises:
        DataError: an empty log (nothing to estimate from).
    """
    if totals.slots == 0:
        raise DataError(
            "The log has no logged slot to estimate from.",
            hint="Serve the experiment (impressions are logged per shown item) and let the stream land them first.",
        )
    out: dict[str, Any] = {}
    for name in ESTIMATORS:
        t = totals.ratios[name]
        if t.sum_x == 0 or totals.matched == 0:
            # No logged slot where the candidate could have shown the logged item: the log says
            # nothing about the candidate (not "CTR 0 with certainty").
            out[name] = OpeEstimate(name, math.nan, math.nan, math.nan, math.nan)
            continue
        e = ratio_estimate(t, alpha)
        high = e.ci_high
        if t.sum_y == 0:
            # No click where the candidate agrees: the exact Poisson bound on the clicks of the
            # matched slots, each worth at most max_w / sum_x of the estimate (ratio_estimate's
            # bound over sum_x alone would ignore the weights).
            high = -math.log(alpha / 2.0) * max(totals.max_w, 1.0) / t.sum_x
        out[name] = OpeEstimate(name, e.value, e.se, e.ci_low, high)
    ess = totals.sum_w**2 / totals.sum_w_sq if totals.sum_w_sq > 0 else 0.0
    out["diagnostics"] = {
        "units": totals.ratios["ips"].users,
        "slots": int(totals.slots),
        "matched_slots": int(totals.matched),
        "mean_weight": totals.sum_w / totals.slots,
        "max_weight": totals.max_w,
        "clipped_slots": int(totals.clipped),
        "effective_sample_size": ess,
    }
    return out


def estimate(
    pscore: npt.ArrayLike,
    reward: npt.ArrayLike,
    target_prob: npt.ArrayLike,
    *,
    unit: Sequence[Any] | None = None,
    q_logged: npt.ArrayLike | None = None,
    q_target: npt.ArrayLike | None = None,
    clip: float = math.inf,
    alpha: float = 0.05,
    where: Sequence[str] | None = None,
) -> dict[str, Any]:
    """IPS, SNIPS and DR of a small log in memory (the Spark job computes the same sums).

    Args:
        pscore, reward, target_prob, q_logged, q_target, clip, where: as :func:`slot_terms`.
        unit: each row's unit (user) for the variance; None: each row its own unit.
        alpha: two-sided level of the intervals.

    Returns:
        ``{"ips": OpeEstimate, "snips": ..., "dr": ..., "diagnostics": {...}}``.

    Raises:
        DataError: an empty log, or a bad row (see :func:`slot_terms`).
    """
    terms = slot_terms(pscore, reward, target_prob, q_logged, q_target, clip=clip, where=where)
    n = terms["slots"].size
    if n == 0:
        return estimates_from_totals(totals_from_units({c: [] for c in TERM_COLUMNS}, 0.0), alpha)
    if unit is None:
        per_unit = terms
    else:
        if len(unit) != n:
            raise DataError(f"unit has {len(unit)} entries for {n} logged slots.")
        _, inverse = np.unique(np.asarray([str(u) for u in unit], dtype=object), return_inverse=True)
        per_unit = {c: np.bincount(inverse, weights=v) for c, v in terms.items()}
    return estimates_from_totals(totals_from_units(per_unit, float(terms["w"].max())), alpha)
