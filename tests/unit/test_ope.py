"""The off-policy estimators (sparktf.experiments.ope) on small logs with known answers.

obp 0.4.1's formulas (``obp/ope/estimators.py``) are written out in numpy here, as obp itself
does not run on this stack; a seeded Monte-Carlo bandit checks the intervals' coverage.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparktf.errors import DataError
from sparktf.experiments.ope import ESTIMATORS, estimate, fit_pbm_reward

# A 5-slot log, hand-computed below.
P = [0.5, 0.25, 0.5, 1.0, 0.2]
R = [1, 0, 1, 1, 0]
T = [1.0, 0.5, 0.0, 1.0, 0.4]  # w = [2, 2, 0, 1, 2]
QL = [0.5, 0.2, 0.4, 0.8, 0.1]
QT = [0.6, 0.3, 0.3, 0.8, 0.2]


def _delta_se(y: np.ndarray, x: np.ndarray) -> float:
    """The delta-method SE of Σy/Σx with each row its own unit, written out."""
    n, ratio = len(y), y.sum() / x.sum()
    lin = (y - ratio * x) / x.mean()
    return float(np.sqrt(lin.var(ddof=1) / n))


def test_hand_computed_ips_snips_dr_and_diagnostics() -> None:
    est = estimate(P, R, T, q_logged=QL, q_target=QT)
    # w r = [2, 0, 0, 1, 0]: IPS = 3 / 5, SNIPS = 3 / Σw = 3 / 7.
    assert est["ips"].value == pytest.approx(0.6, abs=1e-15)
    assert est["snips"].value == pytest.approx(3 / 7, abs=1e-15)
    # DR terms q̂π + w (r − q̂): 0.6 + 2·0.5, 0.3 − 2·0.2, 0.3 + 0, 0.8 + 0.2, 0.2 − 2·0.1 → 2.8 / 5.
    assert est["dr"].value == pytest.approx(0.56, abs=1e-15)
    # IPS: var(ddof=1) of [2, 0, 0, 1, 0] is 0.8, so SE = sqrt(0.8 / 5) = 0.4; CI = 0.6 ± 1.96 · 0.4.
    assert est["ips"].se == pytest.approx(0.4, rel=1e-12)
    assert (est["ips"].ci_low, est["ips"].ci_high) == pytest.approx((0.6 - 1.959964 * 0.4, 0.6 + 1.959964 * 0.4))
    w = np.array([2.0, 2.0, 0.0, 1.0, 2.0])
    assert est["snips"].se == pytest.approx(_delta_se(w * np.array(R), w), rel=1e-12)
    assert est["dr"].se == pytest.approx(np.std([1.6, -0.1, 0.3, 1.0, 0.0], ddof=1) / math.sqrt(5), rel=1e-12)
    assert est["diagnostics"] == {
        "units": 5,
        "slots": 5,
        "matched_slots": 4,
        "mean_weight": pytest.approx(7 / 5),
        "max_weight": 2.0,
        "clipped_slots": 0,
        "effective_sample_size": pytest.approx(49 / 13),  # (Σw)² / Σw²
    }


def test_clipped_weights() -> None:
    est = estimate(P, R, T, q_logged=QL, q_target=QT, clip=1.5)
    # w → [1.5, 1.5, 0, 1, 1.5]: three slots cut.
    assert est["ips"].value == pytest.approx(2.5 / 5)
    assert est["snips"].value == pytest.approx(2.5 / 5.5)
    assert est["dr"].value == pytest.approx((0.6 + 0.75 + 0.3 - 0.3 + 0.3 + 1.0 + 0.2 - 0.15) / 5)
    d = est["diagnostics"]
    assert (d["clipped_slots"], d["max_weight"], d["mean_weight"]) == (3, 1.5, pytest.approx(5.5 / 5))
    # A clip above every weight changes nothing.
    assert estimate(P, R, T, clip=2.0)["ips"].value == estimate(P, R, T)["ips"].value
    with pytest.raises(DataError, match="clip must be > 0"):
        estimate(P, R, T, clip=0.0)


def _random_log(rng: np.random.Generator, n: int, n_actions: int, len_list: int) -> dict[str, np.ndarray]:
    """A context-dependent log: per-row action_dist (n, n_actions, len_list), each (row, position) a distribution."""
    action_dist = rng.dirichlet(np.full(n_actions, 0.7), size=(n, len_list)).transpose(0, 2, 1)
    return {
        "action": rng.integers(0, n_actions, n),
        "position": rng.integers(0, len_list, n),
        "reward": rng.binomial(1, 0.3, n).astype(np.float64),
        "pscore": rng.uniform(0.05, 1.0, n),
        "action_dist": action_dist,
        "q_hat": rng.uniform(0.0, 1.0, (n, n_actions, len_list)),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_estimators_are_obps_formulas(seed: int) -> None:
    log = _random_log(np.random.default_rng(seed), 400, 7, 3)
    n, a, k, r, p = len(log["action"]), log["action"], log["position"], log["reward"], log["pscore"]
    rows = np.arange(n)
    dist, q_hat = log["action_dist"], log["q_hat"]
    # obp 0.4.1, InverseProbabilityWeighting._estimate_round_rewards and estimate_policy_value:
    iw = dist[rows, a, k] / p
    obp_ipw = np.mean(r * iw)
    # SelfNormalizedInverseProbabilityWeighting: reward * iw / iw.mean(), then the mean.
    obp_snipw = np.mean(r * iw / iw.mean())
    # DoublyRobust: np.average(q̂ at the position, weights=π at the position) + iw (r − q̂ factual).
    q_at_pos, pi_at_pos = q_hat[rows, :, k], dist[rows, :, k]
    obp_dr_terms = np.average(q_at_pos, weights=pi_at_pos, axis=1) + iw * (r - q_hat[rows, a, k])
    obp_dr = np.mean(obp_dr_terms)

    # ope.py takes Σ_a π q̂ (obp normalises by Σ_a π, which is 1 for a policy).
    est = estimate(p, r, dist[rows, a, k], q_logged=q_hat[rows, a, k], q_target=(q_at_pos * pi_at_pos).sum(axis=1))
    assert abs(est["ips"].value - obp_ipw) < 1e-12
    assert abs(est["snips"].value - obp_snipw) < 1e-12
    assert abs(est["dr"].value - obp_dr) < 1e-12
    # With each row its own unit, IPS's and DR's SE are the plain standard errors of the round rewards.
    assert est["ips"].se == pytest.approx(np.std(r * iw, ddof=1) / math.sqrt(n), rel=1e-10)
    assert est["dr"].se == pytest.approx(np.std(obp_dr_terms, ddof=1) / math.sqrt(n), rel=1e-10)
    assert est["snips"].se == pytest.approx(_delta_se(r * iw, iw), rel=1e-10)


def test_a_propensity_of_zero_names_the_row() -> None:
    where = ["request r1 position 1", "request r1 position 2", "request r2 position 1"]
    with pytest.raises(DataError) as info:
        estimate([0.5, 0.0, 0.5], [1, 0, 1], [1, 1, 1], where=where)
    assert "request r1 position 2" in info.value.message and "(0, 1]" in info.value.message
    assert info.value.hint
    with pytest.raises(DataError, match=r"the first is row 2 with .*nan"):
        estimate([0.5, 0.5, float("nan")], [1, 0, 1], [1, 1, 1])
    with pytest.raises(DataError, match=r"row 0 with .*1\.5"):
        estimate([1.5], [1], [1])


def test_a_deterministic_log_evaluated_on_itself_is_its_on_policy_ctr() -> None:
    # Propensity 1: the logging policy always shows what it showed, and the target is that same policy.
    rng = np.random.default_rng(7)
    clicks = rng.binomial(1, 0.2, 300).astype(np.float64)
    q = rng.uniform(0, 1, 300)  # whatever q̂ is: q̂π = q̂(logged item) when π is the logged item with certainty
    est = estimate(np.ones(300), clicks, np.ones(300), q_logged=q, q_target=q)
    for name in ESTIMATORS:
        assert est[name].value == pytest.approx(clicks.mean(), abs=1e-15)
    assert est["ips"].se == pytest.approx(np.std(clicks, ddof=1) / math.sqrt(300), rel=1e-12)
    assert est["diagnostics"]["effective_sample_size"] == pytest.approx(300)


def test_an_empty_log_is_an_error_that_says_so() -> None:
    with pytest.raises(DataError, match="no logged slot") as info:
        estimate([], [], [])
    assert info.value.hint and "impressions" in info.value.hint
    with pytest.raises(DataError, match="no logged slot"):
        estimate([], [], [], unit=[])


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_a_target_probability_outside_0_1_is_an_error(bad: float) -> None:
    with pytest.raises(DataError, match=r"candidate's probability .* at row 1 is outside \[0, 1\]"):
        estimate([0.5, 0.5], [1, 0], [1.0, bad])


def test_arrays_of_different_lengths_or_a_nonfinite_reward_are_errors() -> None:
    with pytest.raises(DataError, match="one length"):
        estimate([0.5, 0.5], [1], [1, 1])
    with pytest.raises(DataError, match="not finite"):
        estimate([0.5, 0.5], [1, float("inf")], [1, 1])
    with pytest.raises(DataError, match="unit has 1 entries for 2"):
        estimate([0.5, 0.5], [1, 0], [1, 1], unit=["u"])


def test_every_estimate_is_nan_when_no_slot_matches_the_candidate() -> None:
    # Without support the log says nothing about the candidate: not "CTR 0 with certainty".
    est = estimate([0.5, 0.5, 0.25], [1, 0, 1], [0.0, 0.0, 0.0])
    for name in ("ips", "snips", "dr"):
        assert math.isnan(est[name].value) and math.isnan(est[name].ci_high), name
    assert est["diagnostics"]["matched_slots"] == 0 and est["diagnostics"]["effective_sample_size"] == 0.0


def test_units_change_the_se_not_the_value() -> None:
    rng = np.random.default_rng(3)
    n = 600
    p = rng.uniform(0.1, 1.0, n)
    t = rng.uniform(0.0, 1.0, n)
    # Users of 6 slots with user-level click propensities: correlated within the user.
    user = np.repeat(np.arange(n // 6), 6)
    r = rng.binomial(1, np.repeat(rng.uniform(0, 0.8, n // 6), 6)).astype(np.float64)
    flat = estimate(p, r, t)
    clustered = estimate(p, r, t, unit=[f"u{u}" for u in user])
    for name in ESTIMATORS:
        assert clustered[name].value == pytest.approx(flat[name].value, rel=1e-12)
        assert clustered[name].se != pytest.approx(flat[name].se, rel=1e-3)
    assert clustered["ips"].se > flat["ips"].se  # positively correlated slots: wider
    assert (clustered["diagnostics"]["units"], flat["diagnostics"]["units"]) == (100, n)
    # The clustered SE is the per-user one, written out.
    y = np.bincount(user, weights=r * t / p)
    x = np.bincount(user, weights=np.ones(n))
    assert clustered["ips"].se == pytest.approx(_delta_se(y, x), rel=1e-10)


def test_dr_equals_ips_when_the_reward_model_is_zero() -> None:
    rng = np.random.default_rng(4)
    p, t, r = rng.uniform(0.1, 1, 50), rng.uniform(0, 1, 50), rng.binomial(1, 0.4, 50)
    for est in (estimate(p, r, t), estimate(p, r, t, q_logged=np.zeros(50), q_target=np.zeros(50))):
        assert est["dr"].value == est["ips"].value
        assert est["dr"].se == est["ips"].se


def test_dr_is_exact_when_the_reward_model_is_the_reward() -> None:
    # Rewards a deterministic function of (item, position), q̂ equal to it: every slot's
    # correction w (r − q̂) is 0, so each DR term is q̂π at its position, whatever was logged.
    rng = np.random.default_rng(5)
    n_items, len_list, n = 10, 3, 500
    reward_of = rng.binomial(1, 0.3, (n_items, len_list)).astype(np.float64)
    target = rng.dirichlet(np.ones(n_items), size=len_list).T  # (items, positions), a random (not deterministic) target
    item, pos = rng.integers(0, n_items, n), rng.integers(0, len_list, n)
    r = reward_of[item, pos]
    value_at = (target * reward_of).sum(axis=0)  # the target's true CTR at each position
    est = estimate(np.full(n, 1 / n_items), r, target[item, pos], q_logged=reward_of[item, pos], q_target=value_at[pos])
    assert est["dr"].value == pytest.approx(value_at[pos].mean(), abs=1e-14)
    assert abs(est["ips"].value - value_at[pos].mean()) > 1e-3  # IPS is not exact on the same log
    # Its SE is then only the spread of the positions' values; with one position it is exactly 0.
    one = estimate(
        np.full(n, 1 / n_items),
        reward_of[item, 0],
        target[item, 0],
        q_logged=reward_of[item, 0],
        q_target=np.full(n, value_at[0]),
    )
    assert one["dr"].value == pytest.approx(value_at[0], abs=1e-14)
    assert one["dr"].se == 0.0 and one["dr"].ci_low == one["dr"].ci_high == one["dr"].value
    assert one["ips"].se > 0


def test_the_pbm_reward_model() -> None:
    # Position 1: 10 clicks / 100, position 2: 5 / 100; overall 0.075, θ = (4/3, 2/3).
    model = fit_pbm_reward(
        {1: (10.0, 100.0), 2: (5.0, 100.0)},
        {"a": {1: (8.0, 50.0), 2: (4.0, 50.0)}, "b": {1: (2.0, 50.0), 2: (1.0, 50.0)}},
    )
    assert model.theta == pytest.approx((4 / 3, 2 / 3))
    assert model.base == pytest.approx(0.075)
    # γ_a = (12 + 20 · 0.075) / (50 · 4/3 + 50 · 2/3 + 20)
    assert model.gamma["a"] == pytest.approx(13.5 / 120)
    assert model.q(["a", "unseen"], [2, 1]) == pytest.approx([2 / 3 * 13.5 / 120, 4 / 3 * 0.075])
    assert fit_pbm_reward({1: (0.0, 10.0)}, {"a": {1: (0.0, 10.0)}}).q(["a"], [1]) == [0.0]


def test_intervals_cover_the_truth_on_a_simulated_bandit() -> None:
    """600 seeded logs of a context-free bandit, 20 items x 3 positions, uniform logging.

    Measured: coverage 0.942 (IPS) and 0.950 (DR) over these seeds; 0.959 and 0.959 over
    3,000 (the position counts are fixed, the variance treats them as random: a little wide).
    """
    n_items, len_list, per_position, repeats = 20, 3, 1500, 600
    world = np.random.default_rng(2024)
    gamma = world.uniform(0.05, 0.45, n_items)
    ctr = np.outer(gamma, [1.0, 0.7, 0.5]) * world.uniform(0.8, 1.2, (n_items, len_list))  # not exactly PBM
    logits = 4 * gamma[:, None] + world.normal(0, 0.5, (n_items, len_list))
    target = np.exp(logits) / np.exp(logits).sum(axis=0)  # favours good items; each column sums to 1
    truth = float((target * ctr).sum(axis=0).mean())  # each position a third of the slots
    labels = np.array([str(a) for a in range(n_items)])
    pos = np.repeat(np.arange(1, len_list + 1), per_position)
    n = pos.size
    covered = {"ips": 0, "dr": 0}
    errors = {"ips": [], "dr": []}
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        item = rng.integers(0, n_items, n)
        click = (rng.random(n) < ctr[item, pos - 1]).astype(np.float64)
        cells_n = np.bincount(item * len_list + pos - 1, minlength=n_items * len_list).reshape(n_items, len_list)
        cells_c = np.bincount(item * len_list + pos - 1, weights=click, minlength=n_items * len_list).reshape(
            n_items, len_list
        )
        model = fit_pbm_reward(
            {k + 1: (cells_c[:, k].sum(), cells_n[:, k].sum()) for k in range(len_list)},
            {labels[a]: {k + 1: (cells_c[a, k], cells_n[a, k]) for k in range(len_list)} for a in range(n_items)},
        )
        q_hat = np.stack([model.q(labels, np.full(n_items, k)) for k in range(1, len_list + 1)], axis=1)
        est = estimate(
            np.full(n, 1 / n_items),
            click,
            target[item, pos - 1],
            q_logged=q_hat[item, pos - 1],
            q_target=(target * q_hat).sum(axis=0)[pos - 1],
        )
        for name in covered:
            covered[name] += est[name].ci_low <= truth <= est[name].ci_high
            errors[name].append(est[name].value - truth)
    for name, c in covered.items():
        assert 0.93 <= c / repeats <= 0.99, (name, c / repeats)
        assert abs(np.mean(errors[name])) < 3 * np.std(errors[name]) / math.sqrt(repeats)  # unbiased
    assert np.std(errors["dr"]) < np.std(errors["ips"])  # a useful q̂ lowers the variance


def test_no_click_where_the_candidate_agrees_bounds_by_the_weights() -> None:
    # Uniform logging over 20 items, a candidate fixed on one of them: 1 slot in 20 matches, with
    # weight 20. No click there: the upper bound is the Poisson bound on the matched slots'
    # clicks, each worth 20 / n, i.e. about 3.69 / matched, not 3.69 / n.
    n = 2000
    rng = np.random.default_rng(5)
    logged = rng.integers(0, 20, n)
    target = (logged == 0).astype(float)
    est = estimate(np.full(n, 1 / 20), np.zeros(n), target)
    assert est["ips"].value == 0.0
    assert est["ips"].ci_high == pytest.approx(-math.log(0.025) * 20 / n)
    assert est["ips"].ci_high > 3.0 / target.sum() * 0.5
