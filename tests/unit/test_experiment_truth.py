"""The experiment's statistics against the simulated shoppers' known truth (issue 17).

In-process (:class:`~sparktf.experiments.simulator.LocalShop`), so that many seeded repeats
run in seconds: A/A intervals contain 0 at about the nominal rate, each arm's interval
contains the arm's true CTR, a broken split is flagged by the sample-ratio test. The same
shoppers drive the real server over HTTP in ``tests/integration/test_experiment.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparktf.config import GeneratorConfig
from sparktf.data.generator import build_catalog
from sparktf.experiments.assignment import Arm, ArmModel, Assignment, bucket_of, parse_arm_model, unit_of
from sparktf.experiments.simulator import LocalShop, ShopperSimulator, item_name
from sparktf.experiments.stats import RatioTotals, lift, ratio_estimate, sample_ratio_test

WORLD = GeneratorConfig(num_events=30_000, num_users=3_000, num_items=300, num_categories=8, num_brands=20, days=5)


def _assignment(salt: str, weights: tuple[float, float] = (1.0, 1.0)) -> Assignment:
    model = ArmModel("baseline", "popular")
    return Assignment("exp", salt, (Arm("control", model, weights[0]), Arm("treatment", model, weights[1])), "control")


def _popular(offset: int = 0) -> list[str]:
    pop = build_catalog(WORLD).popularity
    order = np.argsort(-pop, kind="stable")
    return [item_name(int(i)) for i in np.concatenate([order[offset:], order[:offset]])]


def _run(seed: int, shop: LocalShop, sessions: int = 700) -> ShopperSimulator:
    # A fixed clock: the world time (and so the flash sale) does not move, so a seed replays exactly.
    sim = ShopperSimulator(WORLD, seed=seed, k=10, position_bias=1.0, steps_per_session=4.0, clock=lambda: 1e9)
    sim.result = sim.run(lambda: shop, duration_s=600, rate=1e9, concurrency=1, max_sessions=sessions)  # type: ignore[attr-defined]
    return sim


def test_assignment_is_sticky_salted_and_weighted() -> None:
    a = _assignment("s1", (3.0, 1.0))
    units = [f"u{i}" for i in range(20_000)]
    arms = [a.arm_for(u).name for u in units]
    assert arms == [_assignment("s1", (3.0, 1.0)).arm_for(u).name for u in units]  # same everywhere, any process
    share = arms.count("control") / len(arms)
    assert abs(share - 0.75) < 0.015 and a.shares == {"control": 0.75, "treatment": 0.25}
    other = [_assignment("s2", (3.0, 1.0)).arm_for(u).name for u in units]
    assert 0.3 < np.mean([x != y for x, y in zip(arms, other, strict=True)]) < 0.45  # a new salt reshuffles
    assert bucket_of("s", "u1", 10_000) == bucket_of("s", "u1", 10_000)
    assert unit_of(None, "abc") == "anonymous:abc" and unit_of("u1", "abc") == "u1" and unit_of(None, None) is None
    assert parse_arm_model("@challenger") == ArmModel("alias", "challenger")
    assert parse_arm_model("3") == ArmModel("version", "3")
    with pytest.raises(ValueError, match="popular"):
        parse_arm_model("champion")


def test_aa_intervals_contain_zero_at_the_nominal_rate() -> None:
    """24 A/A experiments (the same ranking in both arms, a new salt and new shoppers each):
    the 95% interval of the CTR difference must contain 0 in about 95% of them."""
    covered, pvalues = 0, []
    repeats = 24
    for seed in range(repeats):
        a = _assignment(f"aa-{seed}")
        shop = LocalShop(lambda u, a=a: a.arm_for(u).name, {"control": _popular(), "treatment": _popular()})
        _run(seed, shop)
        lf = lift(RatioTotals.of(*shop.user_counts("treatment")), RatioTotals.of(*shop.user_counts("control")))
        covered += lf.absolute_ci[0] <= 0.0 <= lf.absolute_ci[1]
        pvalues.append(lf.p_value)
    # Binomial(24, 0.95): P(X <= 20) = 3%; the seeds are fixed, so this is deterministic.
    assert covered >= 21, f"A/A coverage {covered}/{repeats}"
    assert np.mean(np.array(pvalues) < 0.05) <= 0.15


def test_each_arms_interval_contains_its_true_ctr_and_the_better_ranking_wins() -> None:
    """Two rankings, the treatment's shifted 20 ranks down the popularity list: each arm's CTR
    interval contains its true CTR (expected clicks per impression from the shoppers' known
    probabilities) in most seeds, and the lift's sign matches the truth's."""
    hits, signs, repeats = 0, 0, 8
    for seed in range(repeats):
        a = _assignment(f"ab-{seed}")
        shop = LocalShop(lambda u, a=a: a.arm_for(u).name, {"control": _popular(), "treatment": _popular(20)})
        sim = _run(100 + seed, shop, sessions=900)
        truth = {arm: t.true_ctr for arm, t in sim.result.arms.items()}  # type: ignore[attr-defined]
        for arm in ("control", "treatment"):
            est = ratio_estimate(RatioTotals.of(*shop.user_counts(arm)))
            hits += est.ci_low <= truth[arm] <= est.ci_high
        lf = lift(RatioTotals.of(*shop.user_counts("treatment")), RatioTotals.of(*shop.user_counts("control")))
        signs += np.sign(lf.absolute) == np.sign(truth["treatment"] - truth["control"])
    assert hits >= 14, f"{hits}/{2 * repeats} arm intervals contain the true CTR"
    assert signs >= 7


def test_a_broken_split_is_flagged_by_the_sample_ratio_test() -> None:
    a = _assignment("srm")

    def broken(u: str) -> str:  # a bug that sends a quarter of the treatment's users to the control
        arm = a.arm_for(u).name
        return "control" if arm == "treatment" and bucket_of("bug", u, 4) == 0 else arm

    shop = LocalShop(broken, {"control": _popular(), "treatment": _popular()})
    _run(5, shop)
    counts = [len(shop.per_user.get(arm, {})) for arm in ("control", "treatment")]
    assert sample_ratio_test(counts, [0.5, 0.5]).mismatch, counts
    healthy = LocalShop(lambda u: a.arm_for(u).name, {"control": _popular(), "treatment": _popular()})
    _run(5, healthy)
    counts = [len(healthy.per_user.get(arm, {})) for arm in ("control", "treatment")]
    assert not sample_ratio_test(counts, [0.5, 0.5]).mismatch, counts


def test_the_same_seed_sends_the_same_shoppers_and_clicks() -> None:
    def once(seed: int) -> dict[str, dict[str, list[int]]]:
        a = _assignment("repro")
        shop = LocalShop(lambda u: a.arm_for(u).name, {"control": _popular(), "treatment": _popular(20)})
        _run(seed, shop, sessions=200)
        return shop.per_user

    assert once(3) == once(3)
    assert once(3) != once(4)
