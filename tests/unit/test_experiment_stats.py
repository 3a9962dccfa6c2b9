"""User-level A/B statistics (sparktf.experiments.stats) checked against known truth.

The synthetic users: impressions ``x = 1 + Poisson(lam)``, a per-user click rate
``p ~ Beta(a, b)`` drawn independently of ``x``, clicks ``y ~ Binomial(x, p)``. Clicks are
correlated within a user, and the population CTR ``E[y] / E[x] = E[p] = a / (a + b)``
is known exactly, as is the delta-method variance of the CTR of ``n`` users:
``Var(R) ≈ E[(y - R x)²] / (n E[x]²)`` with
``E[(y - R x)²] = E[x] E[p (1 - p)] + E[x²] Var(p)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist
from scipy.stats import norm

from sparktf.experiments.stats import (
    Lift,
    RatioTotals,
    SampleRatio,
    bootstrap_lift,
    lift,
    linearized_variance,
    mde,
    ratio_estimate,
    sample_ratio_test,
)


def _users(
    rng: np.random.Generator, shape: int | tuple[int, ...], a: float = 2.0, b: float = 18.0, lam: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """(clicks, impressions) per user."""
    x = 1 + rng.poisson(lam, size=shape)
    p = rng.beta(a, b, size=shape)
    y = rng.binomial(x, p)
    return y.astype(np.float64), x.astype(np.float64)


def _true_ratio(a: float, b: float) -> float:
    return a / (a + b)


def _true_var_of_ratio(n: int, a: float, b: float, lam: float) -> float:
    """The delta-method Var(R) of n users, from the generating process."""
    mean_p = a / (a + b)
    var_p = a * b / ((a + b) ** 2 * (a + b + 1))
    ex, ex2 = 1 + lam, lam + (1 + lam) ** 2
    e_sq = ex * (mean_p - (var_p + mean_p**2)) + ex2 * var_p
    return e_sq / (n * ex**2)


# --------------------------------------------------------------------------- RatioTotals


def test_ratio_totals_of_sums_ratio_and_merge() -> None:
    y = np.array([1.0, 0.0, 3.0, 2.0])
    x = np.array([10.0, 5.0, 20.0, 4.0])
    t = RatioTotals.of(y, x)
    assert t == RatioTotals(users=4, sum_y=6.0, sum_x=39.0, sum_yy=14.0, sum_xx=541.0, sum_xy=78.0)
    assert t.ratio == pytest.approx(6 / 39)

    a, b = RatioTotals.of(y[:1], x[:1]), RatioTotals.of(y[1:], x[1:])
    assert a.merged(b) == t
    assert b.merged(a) == t

    assert math.isnan(RatioTotals.of([0.0, 0.0], [0.0, 0.0]).ratio)
    empty = RatioTotals.of([], [])
    assert empty.users == 0 and math.isnan(empty.ratio)
    assert empty.merged(t) == t


def test_ratio_totals_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="one value per user"):
        RatioTotals.of([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        RatioTotals.of([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="NaN"):
        RatioTotals.of([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="users"):
        RatioTotals(users=-1, sum_y=0, sum_x=0, sum_yy=0, sum_xx=0, sum_xy=0)


# --------------------------------------------------------------------------- delta method


def test_delta_variance_matches_per_user_linearisation_and_textbook_formula() -> None:
    rng = np.random.default_rng(1)
    y, x = _users(rng, 300)
    t = RatioTotals.of(y, x)
    r = y.sum() / x.sum()
    # Linearisation computed directly from the users, not from the sums.
    lin = (y - r * x) / x.mean()
    assert linearized_variance(t) == pytest.approx(np.var(lin, ddof=1), rel=1e-9)
    cov = np.cov(np.vstack([y, x]), ddof=1)
    textbook = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / x.mean() ** 2 / len(y)
    est = ratio_estimate(t, alpha=0.1)
    assert est.value == pytest.approx(r)
    assert est.variance == pytest.approx(textbook, rel=1e-9)
    assert est.se == pytest.approx(math.sqrt(textbook))
    z = norm.ppf(0.95)
    assert (est.ci_low, est.ci_high) == pytest.approx((r - z * est.se, r + z * est.se))


def test_delta_variance_is_nan_when_undefined() -> None:
    one = ratio_estimate(RatioTotals.of([1.0], [3.0]))
    assert one.value == pytest.approx(1 / 3) and math.isnan(one.variance) and math.isnan(one.ci_low)
    no_x = ratio_estimate(RatioTotals.of([0.0, 0.0], [0.0, 0.0]))
    assert math.isnan(no_x.value) and math.isnan(no_x.variance)
    assert math.isnan(linearized_variance(RatioTotals.of([], [])))
    with pytest.raises(ValueError, match="alpha"):
        ratio_estimate(RatioTotals.of([1.0, 2.0], [3.0, 3.0]), alpha=1.5)


def test_delta_variance_agrees_with_a_large_bootstrap_and_the_truth() -> None:
    rng = np.random.default_rng(2)
    n = 5000
    y, x = _users(rng, n)
    est = ratio_estimate(RatioTotals.of(y, x))
    # Bootstrap of users, written here independently of the module.
    idx = rng.integers(0, n, size=(2000, n))
    boot = y[idx].sum(axis=1) / x[idx].sum(axis=1)
    boot_var = float(np.var(boot, ddof=1))
    assert est.variance == pytest.approx(boot_var, rel=0.15)
    assert est.variance == pytest.approx(_true_var_of_ratio(n, 2, 18, 8), rel=0.15)
    assert abs(est.value - _true_ratio(2, 18)) < 4 * est.se


def test_per_impression_binomial_se_understates_clustered_ctr() -> None:
    rng = np.random.default_rng(3)
    n, a, b, lam = 20_000, 1.0, 9.0, 20.0
    y, x = _users(rng, n, a=a, b=b, lam=lam)
    est = ratio_estimate(RatioTotals.of(y, x))
    binomial_se = math.sqrt(est.value * (1 - est.value) / x.sum())
    true_se = math.sqrt(_true_var_of_ratio(n, a, b, lam))
    assert est.se == pytest.approx(true_se, rel=0.1)
    assert binomial_se < 0.75 * est.se
    assert binomial_se < 0.75 * true_se


# --------------------------------------------------------------------------- lift


def test_lift_matches_hand_formulas() -> None:
    rng = np.random.default_rng(4)
    yt, xt = _users(rng, 400, a=2.5, b=17.5)
    yc, xc = _users(rng, 500)
    res = lift(RatioTotals.of(yt, xt), RatioTotals.of(yc, xc), alpha=0.05)
    assert isinstance(res, Lift) and res.alpha == 0.05

    def r_var(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
        r = y.sum() / x.sum()
        return r, float(np.var(y - r * x, ddof=1) / x.mean() ** 2 / len(y))

    (rt, vt), (rc, vc) = r_var(yt, xt), r_var(yc, xc)
    z = norm.ppf(0.975)
    assert res.absolute == pytest.approx(rt - rc)
    se = math.sqrt(vt + vc)
    assert res.absolute_ci == pytest.approx((rt - rc - z * se, rt - rc + z * se))
    rel_se = math.sqrt(vt / rc**2 + rt**2 * vc / rc**4)
    assert res.relative == pytest.approx(rt / rc - 1)
    assert res.relative_ci == pytest.approx((rt / rc - 1 - z * rel_se, rt / rc - 1 + z * rel_se))
    assert res.z == pytest.approx((rt - rc) / se)
    assert res.p_value == pytest.approx(2 * norm.sf(abs(res.z)))
    assert res.treatment.value == pytest.approx(rt) and res.control.value == pytest.approx(rc)


def test_lift_degenerate_cases() -> None:
    same = RatioTotals.of([1.0, 1.0], [10.0, 10.0])  # zero variance, zero difference
    res = lift(same, same)
    assert res.absolute == 0 and math.isnan(res.z) and math.isnan(res.p_value)
    higher = RatioTotals.of([2.0, 2.0], [10.0, 10.0])
    res = lift(higher, same)
    assert res.z == math.inf and res.p_value == 0.0
    zero_control = RatioTotals.of([0.0, 0.0], [10.0, 10.0])
    res = lift(higher, zero_control)
    assert res.absolute == pytest.approx(0.2) and math.isnan(res.relative)


def _coverage(cover: np.ndarray) -> tuple[float, float]:
    m = len(cover)
    return float(cover.mean()), 3 * math.sqrt(0.95 * 0.05 / m)


def test_aa_experiments_cover_zero_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(5)
    m, n = 1000, 1000
    yt, xt = _users(rng, (m, n))
    yc, xc = _users(rng, (m, n))
    results = [lift(RatioTotals.of(yt[i], xt[i]), RatioTotals.of(yc[i], xc[i])) for i in range(m)]
    cover = np.array([r.absolute_ci[0] <= 0 <= r.absolute_ci[1] for r in results])
    rate, band = _coverage(cover)
    assert abs(rate - 0.95) <= band, rate
    # The test of no difference then rejects at its level, and agrees with the CI.
    rejects = np.array([r.p_value < 0.05 for r in results])
    assert np.array_equal(rejects, ~cover)
    rel_cover = np.array([r.relative_ci[0] <= 0 <= r.relative_ci[1] for r in results])
    assert abs(rel_cover.mean() - 0.95) <= band, rel_cover.mean()


def test_ci_covers_a_true_nonzero_effect_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(6)
    m, n = 1000, 1000
    (at, bt), (ac, bc) = (2.5, 17.5), (2.0, 18.0)
    true_abs = _true_ratio(at, bt) - _true_ratio(ac, bc)  # 0.125 - 0.1
    true_rel = _true_ratio(at, bt) / _true_ratio(ac, bc) - 1  # 0.25
    yt, xt = _users(rng, (m, n), a=at, b=bt)
    yc, xc = _users(rng, (m, n), a=ac, b=bc)
    results = [lift(RatioTotals.of(yt[i], xt[i]), RatioTotals.of(yc[i], xc[i])) for i in range(m)]
    cover_abs = np.array([r.absolute_ci[0] <= true_abs <= r.absolute_ci[1] for r in results])
    cover_rel = np.array([r.relative_ci[0] <= true_rel <= r.relative_ci[1] for r in results])
    for cover in (cover_abs, cover_rel):
        rate, band = _coverage(cover)
        assert abs(rate - 0.95) <= band, rate
    # The effect is large against its SE here, so the test nearly always sees it.
    assert np.mean([r.p_value < 0.05 for r in results]) > 0.9


# --------------------------------------------------------------------------- sample ratio mismatch


def test_srm_textbook_600_400_is_a_mismatch() -> None:
    res = sample_ratio_test([600, 400], [0.5, 0.5])
    assert isinstance(res, SampleRatio)
    assert res.observed == (600, 400) and res.expected == pytest.approx((500.0, 500.0))
    assert res.chi2 == pytest.approx(40.0)
    assert 1e-10 < res.p_value < 1e-9
    assert res.p_value == pytest.approx(chi2_dist.sf(40.0, 1))
    assert res.mismatch


def test_srm_close_split_and_unequal_weights_pass() -> None:
    res = sample_ratio_test([5000, 5040], [1, 1])
    assert res.chi2 == pytest.approx(2 * 20**2 / 5020)
    assert res.p_value > 0.5 and not res.mismatch
    res = sample_ratio_test([9000, 1000], [90, 10])
    assert res.expected == pytest.approx((9000.0, 1000.0)) and res.chi2 == pytest.approx(0.0)
    assert not res.mismatch
    three = sample_ratio_test([1000, 1000, 1300], [1, 1, 1])
    assert three.p_value == pytest.approx(chi2_dist.sf(three.chi2, 2)) and three.mismatch
    # The level decides: p ≈ 0.0016 is a mismatch at 0.01, not at the default 0.001.
    borderline = sample_ratio_test([5160, 4840], [1, 1])
    assert 0.001 < borderline.p_value < 0.01
    assert not borderline.mismatch and sample_ratio_test([5160, 4840], [1, 1], alpha=0.01).mismatch


def test_srm_zero_weight_arms() -> None:
    dropped = sample_ratio_test([600, 400, 0], [1, 1, 0])
    assert dropped.p_value == pytest.approx(sample_ratio_test([600, 400], [1, 1]).p_value)
    assert dropped.expected == pytest.approx((500.0, 500.0, 0.0)) and dropped.mismatch
    fine = sample_ratio_test([500, 500, 0], [1, 1, 0])
    assert fine.p_value == pytest.approx(1.0) and not fine.mismatch
    leak = sample_ratio_test([500, 500, 3], [1, 1, 0])
    assert leak.p_value == 0.0 and leak.chi2 == math.inf and leak.mismatch
    nobody = sample_ratio_test([0, 0], [1, 1])
    assert nobody.p_value == 1.0 and not nobody.mismatch


@pytest.mark.parametrize(
    ("counts", "weights", "match"),
    [
        ([100], [1.0], "at least two arms"),
        ([], [], "at least two arms"),
        ([100, 100], [1.0, -1.0], "non-negative"),
        ([100, 100], [1.0], "one entry per arm"),
        ([100, -1], [1.0, 1.0], "counts must be non-negative integers"),
        ([100, 1.5], [1.0, 1.0], "counts must be non-negative integers"),
        ([100, 100], [0.0, 0.0], "not all be zero"),
        ([100, 100], [1.0, math.nan], "finite"),
    ],
)
def test_srm_rejects_bad_input(counts: list[float], weights: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_ratio_test(counts, weights)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_close_to_the_delta_ci() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    yt, xt = _users(rng, n, a=2.2, b=17.8)
    yc, xc = _users(rng, n)
    delta = lift(RatioTotals.of(yt, xt), RatioTotals.of(yc, xc))
    abs_lo, abs_hi, rel_lo, rel_hi = bootstrap_lift(yt, xt, yc, xc, replicates=2000, seed=11)
    width = delta.absolute_ci[1] - delta.absolute_ci[0]
    assert abs(abs_lo - delta.absolute_ci[0]) < 0.2 * width
    assert abs(abs_hi - delta.absolute_ci[1]) < 0.2 * width
    rel_width = delta.relative_ci[1] - delta.relative_ci[0]
    assert abs(rel_lo - delta.relative_ci[0]) < 0.2 * rel_width
    assert abs(rel_hi - delta.relative_ci[1]) < 0.2 * rel_width
    # Seeded: the same answer twice, another seed a different one.
    assert bootstrap_lift(yt, xt, yc, xc, replicates=200, seed=3) == bootstrap_lift(
        yt, xt, yc, xc, replicates=200, seed=3
    )
    assert bootstrap_lift(yt, xt, yc, xc, replicates=200, seed=3) != bootstrap_lift(
        yt, xt, yc, xc, replicates=200, seed=4
    )


def test_bootstrap_chunks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import sparktf.experiments.stats as stats

    rng = np.random.default_rng(8)
    yt, xt = _users(rng, 50)
    yc, xc = _users(rng, 60)
    whole = bootstrap_lift(yt, xt, yc, xc, replicates=300, seed=5)
    monkeypatch.setattr(stats, "MAX_BOOTSTRAP_ELEMENTS", 120)  # two or three replicates per chunk
    assert bootstrap_lift(yt, xt, yc, xc, replicates=300, seed=5) == pytest.approx(whole)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="Both arms"):
        bootstrap_lift([], [], [1.0], [2.0])
    with pytest.raises(ValueError, match="treatment"):
        bootstrap_lift([1.0, 2.0], [1.0], [1.0], [2.0])
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_lift([1.0], [2.0], [1.0], [2.0], replicates=0)


# --------------------------------------------------------------------------- power


def test_mde_matches_the_hand_formula() -> None:
    sigma2, n = 4.0, 1000
    expected = (1.959964 + 0.841621) * math.sqrt(2 * sigma2 / n)
    assert mde(sigma2, n) == pytest.approx(expected, rel=1e-5)
    assert mde(sigma2, n) == pytest.approx(2.8 * math.sqrt(2 * sigma2 / n), rel=0.001)
    # Four times the users halve the MDE; more power or a stricter alpha raise it.
    assert mde(sigma2, 4 * n) == pytest.approx(mde(sigma2, n) / 2)
    assert mde(sigma2, n, power=0.9) > mde(sigma2, n) and mde(sigma2, n, alpha=0.01) > mde(sigma2, n)
    for bad in ({"sigma2": -1.0, "n_per_arm": 10}, {"sigma2": 1.0, "n_per_arm": 0}):
        with pytest.raises(ValueError):
            mde(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power"):
        mde(1.0, 10, power=1.0)


def test_mde_of_a_ratio_has_the_promised_power() -> None:
    """An effect of exactly the MDE is detected in about 80% of simulated experiments."""
    rng = np.random.default_rng(9)
    n, m = 1000, 600
    y, x = _users(rng, 20_000)
    effect = mde(linearized_variance(RatioTotals.of(y, x)), n)
    # Treatment: the same users with the click rate scaled so that the CTR rises by `effect`.
    base = _true_ratio(2, 18)
    scale = (base + effect) / base
    yc, xc = _users(rng, (m, n))
    xt = 1 + rng.poisson(8.0, size=(m, n))
    yt = rng.binomial(xt, np.clip(rng.beta(2.0, 18.0, size=(m, n)) * scale, 0, 1)).astype(np.float64)
    hits = [lift(RatioTotals.of(yt[i], xt[i]), RatioTotals.of(yc[i], xc[i])).p_value < 0.05 for i in range(m)]
    power = float(np.mean(hits))
    assert abs(power - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / m), power


def test_an_arm_without_a_single_click_gets_the_poisson_bound_not_a_point() -> None:
    """No clicks at all: the delta method's interval would be [0, 0] (certainty); the bound is
    the exact Poisson one for zero events, so a true rate of 1/2,000 is inside it."""
    t = RatioTotals.of([0.0] * 200, [10.0] * 200)
    est = ratio_estimate(t)
    assert est.value == 0.0 and est.ci_low == 0.0
    assert est.ci_high == pytest.approx(-math.log(0.025) / 2000)
    assert est.ci_high > 1 / 2000
    # Zero events happen with probability exp(-rate * n) <= alpha / 2 above the bound.
    assert math.exp(-est.ci_high * 2000) == pytest.approx(0.025)
