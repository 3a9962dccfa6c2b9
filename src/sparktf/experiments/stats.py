"""User-level statistics of an online A/B experiment: ratio metrics, lift, SRM, power.

Users are the unit of randomisation, so every variance here is over users. A ratio
metric such as CTR = sum(clicks) / sum(impressions) is a ratio of two user-level
means, ``R = ybar / xbar``; its impressions are clustered within users and are not
independent, so a per-impression binomial standard error ``sqrt(R (1 - R) / sum x)``
is too small whenever users differ in their click rates. The delta method
(Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018)
gives the right one from the per-arm moment sums of :class:`RatioTotals`::

    Var(R) ≈ (1 / n) (1 / xbar²) [s_yy - 2 R s_xy + R² s_xx]

with the sample (ddof = 1) variances and covariance over the ``n`` users of an arm.
The same linearisation ``Y_i = (y_i - R x_i) / xbar`` gives the per-user variance used
for the minimum detectable effect (:func:`linearized_variance`, :func:`mde`).

* :func:`ratio_estimate`: the ratio of one arm with its delta-method SE and CI.
* :func:`lift`: absolute and relative lift of treatment over control, their CIs and
  the two-sided normal test of no difference.
* :func:`sample_ratio_test`: Pearson chi-square test of the users per arm against the
  configured split (sample ratio mismatch).
* :func:`bootstrap_lift`: percentile CIs by resampling users, as a check on the delta method.
* :func:`mde`: the minimum detectable absolute effect at a given power.

Why our own code: SciPy has the normal and chi-square distributions but no ratio-metric
delta method for an A/B lift, and statsmodels is not a dependency. The sums in
:class:`RatioTotals` are what one Spark ``groupBy(arm).agg(...)`` computes in one pass,
so the report never needs the per-user rows on the driver. Only NumPy is imported at
module level; SciPy is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Lift",
    "RatioEstimate",
    "RatioTotals",
    "SampleRatio",
    "bootstrap_lift",
    "lift",
    "linearized_variance",
    "mde",
    "ratio_estimate",
    "sample_ratio_test",
]

FloatArray = npt.NDArray[np.float64]

#: :func:`bootstrap_lift` draws at most this many resampled users at once (per arm),
#: so a chunk of replicates stays near 64 MB of indices whatever the arm size.
MAX_BOOTSTRAP_ELEMENTS = 1 << 23


#: Relative size below which the sum of squares of the linearisation is rounding, not variance.
_CANCELLATION = 1e-12


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1; got {alpha!r}.")


def _z(quantile: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(quantile))


def _per_user(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one value per user; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite values.")
    return arr


def _pair(y: npt.ArrayLike, x: npt.ArrayLike, arm: str = "") -> tuple[FloatArray, FloatArray]:
    where = f" ({arm})" if arm else ""
    ya, xa = _per_user(y, f"y{where}"), _per_user(x, f"x{where}")
    if ya.shape != xa.shape:
        raise ValueError(f"y and x{where} must have one value per user each; got {len(ya)} and {len(xa)} values.")
    return ya, xa


# --------------------------------------------------------------------------- ratio of one arm


@dataclass(frozen=True)
class RatioTotals:
    """Per-arm moment sums over users of a ratio metric Y/X (e.g. clicks/impressions).

    What a Spark ``groupBy`` can compute in one pass: ``count(*)``, ``sum(y)``,
    ``sum(x)``, ``sum(y*y)``, ``sum(x*x)``, ``sum(x*y)`` with one row per user.

    Attributes:
        users: ``n``, the number of users of the arm.
        sum_y: sum over users of the numerator (e.g. clicks).
        sum_x: sum over users of the denominator (e.g. impressions).
        sum_yy: sum over users of ``y²``.
        sum_xx: sum over users of ``x²``.
        sum_xy: sum over users of ``x y``.
    """

    users: int
    sum_y: float
    sum_x: float
    sum_yy: float
    sum_xx: float
    sum_xy: float

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"RatioTotals.users must be >= 0; got {self.users}.")

    @classmethod
    def of(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> RatioTotals:
        """The sums of per-user arrays ``y`` (numerator) and ``x`` (denominator).

        Raises:
            ValueError: if the arrays are not 1-D, differ in length or hold NaN/inf.
        """
        ya, xa = _pair(y, x)
        return cls(
            users=len(ya),
            sum_y=float(ya.sum()),
            sum_x=float(xa.sum()),
            sum_yy=float(ya @ ya),
            sum_xx=float(xa @ xa),
            sum_xy=float(xa @ ya),
        )

    def merged(self, other: RatioTotals) -> RatioTotals:
        """The totals of both groups of users together (field-wise sum)."""
        return RatioTotals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def ratio(self) -> float:
        """``sum_y / sum_x``; NaN when ``sum_x == 0``."""
        return self.sum_y / self.sum_x if self.sum_x != 0 else math.nan


def linearized_variance(t: RatioTotals) -> float:
    """Per-user variance of the delta-method linearisation of the ratio.

    The variance (ddof = 1) of ``Y_i = (y_i - R x_i) / xbar`` over users, that is
    ``(s_yy - 2 R s_xy + R² s_xx) / xbar²``, so that ``Var(R) ≈ linearized_variance(t) / n``
    and ``mde(linearized_variance(t), n)`` is the minimum detectable effect of the ratio.

    Args:
        t: the per-arm sums.

    Returns:
        The variance; NaN when there are fewer than two users or ``sum_x == 0``.
    """
    n = t.users
    if n < 2 or t.sum_x == 0:
        return math.nan
    r = t.sum_y / t.sum_x
    xbar = t.sum_x / n
    # s_yy - 2R s_xy + R² s_xx = [Σ(y - R x)² - n (ybar - R xbar)²] / (n - 1), and ybar = R xbar.
    ss = t.sum_yy - 2.0 * r * t.sum_xy + r * r * t.sum_xx
    # The terms cancel when every user has the same ratio; what is left then is rounding.
    if ss <= _CANCELLATION * (t.sum_yy + r * r * t.sum_xx):
        return 0.0
    return ss / (n - 1) / (xbar * xbar)


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio metric of one arm with its delta-method uncertainty.

    Attributes:
        value: ``R = sum_y / sum_x``.
        variance: delta-method ``Var(R)``.
        se: ``sqrt(variance)``.
        ci_low: lower bound of the two-sided ``1 - alpha`` normal CI.
        ci_high: upper bound of that CI.
    """

    value: float
    variance: float
    se: float
    ci_low: float
    ci_high: float


def ratio_estimate(t: RatioTotals, alpha: float = 0.05) -> RatioEstimate:
    """The ratio of one arm, its delta-method variance and ``1 - alpha`` CI.

    Args:
        t: the per-arm sums over users.
        alpha: two-sided level of the confidence interval.

    Returns:
        The estimate; variance, SE and CI are NaN with fewer than two users or ``sum_x == 0``.
        With no success at all (``sum_y == 0``) the CI is ``[0, -ln(alpha / 2) / sum_x]``, the
        exact Poisson bound, instead of the delta method's degenerate ``[0, 0]``.

    Raises:
        ValueError: if ``alpha`` is not in (0, 1).
    """
    _check_alpha(alpha)
    value = t.ratio
    variance = linearized_variance(t) / t.users if t.users >= 2 else math.nan
    se = math.sqrt(variance) if not math.isnan(variance) else math.nan
    half = _z(1.0 - alpha / 2.0) * se
    if t.sum_y == 0 and t.sum_x > 0 and t.users >= 2:
        # No success at all: the delta-method interval collapses to [0, 0], which would claim
        # certainty. The upper bound is then the exact Poisson one for zero events over the
        # denominator (3.69 / sum_x at alpha = 0.05); it ignores clustering, the best zero
        # events allow.
        return RatioEstimate(value=0.0, variance=variance, se=se, ci_low=0.0, ci_high=-math.log(alpha / 2.0) / t.sum_x)
    return RatioEstimate(value=value, variance=variance, se=se, ci_low=value - half, ci_high=value + half)


# --------------------------------------------------------------------------- lift


@dataclass(frozen=True)
class Lift:
    """Treatment versus control for a ratio metric.

    Attributes:
        control: the control arm's estimate.
        treatment: the treatment arm's estimate.
        absolute: ``R_T - R_C``.
        absolute_ci: its ``1 - alpha`` normal CI.
        relative: ``R_T / R_C - 1``.
        relative_ci: its ``1 - alpha`` normal CI (delta method).
        z: ``absolute / SE(absolute)``.
        p_value: two-sided p-value of ``absolute == 0`` under the normal approximation.
        alpha: the level of the CIs.
    """

    control: RatioEstimate
    treatment: RatioEstimate
    absolute: float
    absolute_ci: tuple[float, float]
    relative: float
    relative_ci: tuple[float, float]
    z: float
    p_value: float
    alpha: float


def lift(treatment: RatioTotals, control: RatioTotals, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift of a ratio metric, with delta-method CIs and test.

    The arms are independent, so ``Var(R_T - R_C) = Var(R_T) + Var(R_C)``, and for the
    relative lift ``L = R_T / R_C - 1``,
    ``Var(L) ≈ Var(R_T) / R_C² + R_T² Var(R_C) / R_C⁴``.

    Args:
        treatment: the treatment arm's sums over users.
        control: the control arm's sums over users.
        alpha: two-sided level of the CIs.

    Returns:
        The lift. Undefined quantities (no users, ``sum_x == 0``, ``R_C == 0`` for the
        relative lift) are NaN; a zero variance with a nonzero difference gives an
        infinite ``z`` and a p-value of 0.

    Raises:
        ValueError: if ``alpha`` is not in (0, 1).
    """
    from scipy.stats import norm

    _check_alpha(alpha)
    c, t = ratio_estimate(control, alpha), ratio_estimate(treatment, alpha)
    z_crit = _z(1.0 - alpha / 2.0)

    absolute = t.value - c.value
    var_abs = t.variance + c.variance
    se_abs = math.sqrt(var_abs) if var_abs >= 0 else math.nan
    abs_ci = (absolute - z_crit * se_abs, absolute + z_crit * se_abs)

    if c.value != 0 and not math.isnan(c.value):
        relative = t.value / c.value - 1.0
        var_rel = t.variance / c.value**2 + t.value**2 * c.variance / c.value**4
        se_rel = math.sqrt(var_rel) if var_rel >= 0 else math.nan
    else:
        relative, se_rel = math.nan, math.nan
    rel_ci = (relative - z_crit * se_rel, relative + z_crit * se_rel)

    if math.isnan(absolute) or math.isnan(se_abs) or (se_abs == 0 and absolute == 0):
        z, p = math.nan, math.nan
    elif se_abs == 0:
        z, p = math.copysign(math.inf, absolute), 0.0
    else:
        z = absolute / se_abs
        p = float(2.0 * norm.sf(abs(z)))
    return Lift(
        control=c,
        treatment=t,
        absolute=absolute,
        absolute_ci=abs_ci,
        relative=relative,
        relative_ci=rel_ci,
        z=z,
        p_value=p,
        alpha=alpha,
    )


# --------------------------------------------------------------------------- sample ratio mismatch


@dataclass(frozen=True)
class SampleRatio:
    """The sample ratio mismatch (SRM) test of users per arm against the planned split.

    Attributes:
        observed: users per arm, in the order given.
        expected: users per arm expected from the weights (0 for a zero-weight arm).
        chi2: Pearson chi-square statistic (infinite when a zero-weight arm has users).
        p_value: goodness-of-fit p-value with ``K - 1`` degrees of freedom.
        mismatch: ``p_value < alpha``: the assignment is broken and the experiment
            should not be read.
    """

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool


def sample_ratio_test(counts: Sequence[int], weights: Sequence[float], alpha: float = 0.001) -> SampleRatio:
    """Pearson chi-square test of the users per arm against the configured weights.

    Expected counts are ``n * w / sum(w)`` with ``n = sum(counts)``; the test has
    ``K - 1`` degrees of freedom over the ``K`` arms with a positive weight. An arm with
    weight 0 and no users is dropped; an arm with weight 0 that has users is an
    outright mismatch (``chi2 = inf``, ``p = 0``). With no users at all there is no
    evidence of a mismatch (``chi2 = 0``, ``p = 1``).

    Args:
        counts: users observed per arm (non-negative integers).
        weights: the planned traffic share of each arm (non-negative, any scale).
        alpha: the level below which the p-value flags a mismatch (0.001 by custom,
            since the test runs on every experiment, every day).

    Returns:
        The test result.

    Raises:
        ValueError: on fewer than two arms, lengths that differ, negative or non-integer
            counts, negative or non-finite weights, weights that sum to 0, or ``alpha``
            outside (0, 1).
    """
    from scipy.stats import chisquare

    _check_alpha(alpha)
    if len(counts) != len(weights):
        raise ValueError(f"counts and weights must have one entry per arm; got {len(counts)} and {len(weights)}.")
    if len(counts) < 2:
        raise ValueError(f"A sample ratio test needs at least two arms; got {len(counts)}.")
    obs = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(obs)) or np.any(obs < 0) or np.any(obs != np.round(obs)):
        raise ValueError(f"counts must be non-negative integers; got {list(counts)}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative; got {list(weights)}.")
    if w.sum() <= 0:
        raise ValueError(f"weights must not all be zero; got {list(weights)}.")

    n = float(obs.sum())
    expected = n * w / w.sum()
    observed = tuple(int(c) for c in obs)
    exp_t = tuple(float(e) for e in expected)
    if np.any((w == 0) & (obs > 0)):
        return SampleRatio(observed=observed, expected=exp_t, chi2=math.inf, p_value=0.0, mismatch=True)
    keep = w > 0
    if n == 0 or int(keep.sum()) < 2:
        return SampleRatio(observed=observed, expected=exp_t, chi2=0.0, p_value=1.0, mismatch=False)
    stat, p = chisquare(obs[keep], expected[keep])
    p_value = float(p)
    return SampleRatio(observed=observed, expected=exp_t, chi2=float(stat), p_value=p_value, mismatch=p_value < alpha)


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_ratios(
    y: FloatArray, x: FloatArray, replicates: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """``sum(y*) / sum(x*)`` for ``replicates`` resamples of the users, in chunks."""
    n = len(y)
    out = np.empty(replicates, dtype=np.float64)
    chunk = max(1, MAX_BOOTSTRAP_ELEMENTS // max(n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, replicates, chunk):
            stop = min(start + chunk, replicates)
            idx = rng.integers(0, n, size=(stop - start, n))
            out[start:stop] = y[idx].sum(axis=1) / x[idx].sum(axis=1)
    return out


def bootstrap_lift(
    y_t: npt.ArrayLike,
    x_t: npt.ArrayLike,
    y_c: npt.ArrayLike,
    x_c: npt.ArrayLike,
    *,
    replicates: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Percentile bootstrap CIs of the absolute and relative lift, resampling users.

    Each replicate draws the users of each arm with replacement (within the arm) and
    recomputes ``sum(y) / sum(x)`` per arm. Replicates with an undefined ratio
    (``sum(x*) == 0``) are left out.

    Args:
        y_t: treatment numerator per user (e.g. clicks).
        x_t: treatment denominator per user (e.g. impressions).
        y_c: control numerator per user.
        x_c: control denominator per user.
        replicates: number of bootstrap replicates.
        alpha: two-sided level of the CIs.
        seed: seed of the NumPy generator.

    Returns:
        ``(abs_low, abs_high, rel_low, rel_high)``; NaN where no replicate is defined.

    Raises:
        ValueError: on an empty arm, mismatched or non-finite arrays, ``replicates < 1``
            or ``alpha`` outside (0, 1).
    """
    _check_alpha(alpha)
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1; got {replicates}.")
    yt, xt = _pair(y_t, x_t, "treatment")
    yc, xc = _pair(y_c, x_c, "control")
    if len(yt) == 0 or len(yc) == 0:
        raise ValueError(f"Both arms need users; got {len(yt)} treatment and {len(yc)} control users.")
    rng = np.random.default_rng(seed)
    rt = _bootstrap_ratios(yt, xt, replicates, rng)
    rc = _bootstrap_ratios(yc, xc, replicates, rng)
    q = (alpha / 2.0, 1.0 - alpha / 2.0)

    def percentile(values: Any) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            return math.nan, math.nan
        lo, hi = np.quantile(finite, q)
        return float(lo), float(hi)

    with np.errstate(divide="ignore", invalid="ignore"):
        abs_lo, abs_hi = percentile(rt - rc)
        rel_lo, rel_hi = percentile(rt / rc - 1.0)
    return abs_lo, abs_hi, rel_lo, rel_hi


# --------------------------------------------------------------------------- power


def mde(sigma2: float, n_per_arm: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable absolute effect of a two-arm test with equal arms.

    ``(z_{1-alpha/2} + z_{power}) * sqrt(2 sigma2 / n_per_arm)``: about
    ``2.8 * sqrt(2 sigma2 / n)`` at the usual ``alpha = 0.05`` and 80% power. For a
    ratio metric pass ``sigma2 = linearized_variance(totals)``.

    Args:
        sigma2: per-user variance of the metric.
        n_per_arm: users in each arm.
        alpha: two-sided level of the test.
        power: the probability of detecting an effect of that size.

    Returns:
        The effect size, in the metric's units.

    Raises:
        ValueError: if ``sigma2 < 0``, ``n_per_arm <= 0``, or ``alpha``/``power`` are not in (0, 1).
    """
    _check_alpha(alpha)
    _check_alpha(power, "power")
    if not sigma2 >= 0:
        raise ValueError(f"sigma2 must be a non-negative variance; got {sigma2!r}.")
    if not n_per_arm > 0:
        raise ValueError(f"n_per_arm must be positive; got {n_per_arm!r}.")
    return (_z(1.0 - alpha / 2.0) + _z(power)) * math.sqrt(2.0 * sigma2 / n_per_arm)
