"""Exploring slates (sparktf.experiments.exploration) checked against independent truth.

The truth for Plackett-Luce is brute-force enumeration: the probability of an ordered
prefix ``(i_0, ..., i_{k-1})`` is ``Π_t w_{i_t} / Σ_{b not yet drawn} w_b`` (computed in log
space, so that weights far below e^-745 still count), and summing it over all prefixes
gives every marginal ``P(i at slot j)`` exactly (to rounding). For
epsilon-greedy it is the enumerated mixture of the greedy slate and every ordered
``k``-subset. The sampler of :func:`choose` is checked against the marginals by counting.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from sparktf.experiments import exploration
from sparktf.experiments.exploration import (
    POLICIES,
    Exploration,
    Slate,
    candidate_scores,
    choose,
    slot_marginals,
)


def _pl_truth(scores: np.ndarray, temperature: float, k: int) -> np.ndarray:
    """Plackett-Luce marginals by enumerating every ordered k-prefix, shape (m, k)."""
    logw = (scores - scores.max()) / temperature
    m = len(logw)
    out = np.zeros((m, k))
    for prefix in itertools.permutations(range(m), k):
        left = list(range(m))
        log_p = 0.0
        for i in prefix:
            # the sum of what is left, not the total minus what was drawn (no cancellation)
            log_p += logw[i] - np.logaddexp.reduce(logw[left])
            left.remove(i)
        for j, i in enumerate(prefix):
            out[i, j] += math.exp(log_p)
    return out


def _eps_truth(eps: float, m: int, k: int) -> np.ndarray:
    """Epsilon-greedy marginals by enumerating the mixture, shape (m, k)."""
    out = np.zeros((m, k))
    for j in range(k):
        out[j, j] += 1.0 - eps
    prefixes = list(itertools.permutations(range(m), k))
    for prefix in prefixes:
        for j, i in enumerate(prefix):
            out[i, j] += eps / len(prefixes)
    return out


def _pl(temperature: float = 1.0, candidates: int = 50) -> Exploration:
    return Exploration(kind="plackett_luce", temperature=temperature, candidates=candidates)


def _eps(epsilon: float = 0.2, candidates: int = 50) -> Exploration:
    return Exploration(kind="epsilon_greedy", epsilon=epsilon, candidates=candidates)


# --------------------------------------------------------------------------- Exploration


def test_exploration_describe_pool_and_explores() -> None:
    none = Exploration()
    assert (none.kind, none.explores, none.pool, none.describe()) == ("none", False, 0, "none")
    eps = _eps(0.1, candidates=30)
    assert eps.explores and eps.pool == 30
    assert eps.describe() == "epsilon_greedy(epsilon=0.1,candidates=30)"
    pl = _pl(0.5)
    assert pl.explores and pl.pool == 50
    assert pl.describe() == "plackett_luce(temperature=0.5,candidates=50)"
    assert POLICIES == ("none", "epsilon_greedy", "plackett_luce")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kind": "softmax"}, "experiment.arms[].exploration must"),
        ({"kind": "epsilon_greedy", "epsilon": 0.0}, "experiment.arms[].exploration.epsilon"),
        ({"kind": "epsilon_greedy", "epsilon": 1.5}, "experiment.arms[].exploration.epsilon"),
        ({"kind": "epsilon_greedy", "epsilon": math.nan}, "experiment.arms[].exploration.epsilon"),
        ({"kind": "plackett_luce", "temperature": 0.0}, "experiment.arms[].exploration.temperature"),
        ({"kind": "plackett_luce", "temperature": -1.0}, "experiment.arms[].exploration.temperature"),
        ({"kind": "plackett_luce", "temperature": math.inf}, "experiment.arms[].exploration.temperature"),
        ({"kind": "plackett_luce", "candidates": 0}, "experiment.arms[].exploration.candidates"),
        ({"kind": "epsilon_greedy", "epsilon": 0.1, "candidates": 2.5}, "experiment.arms[].exploration.candidates"),
    ],
)
def test_invalid_exploration_names_the_field(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        Exploration(**fields)


def test_epsilon_one_is_allowed_and_uniform() -> None:
    marg = slot_marginals(_eps(1.0, candidates=4), [3.0, 2.0, 1.0, 0.0], 2)
    np.testing.assert_allclose(marg, np.full((4, 2), 0.25), rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- scores


def test_candidate_scores_keep_model_scores() -> None:
    np.testing.assert_array_equal(candidate_scores([2.5, 1.0, -3.0]), [2.5, 1.0, -3.0])
    assert candidate_scores([]).shape == (0,)


@pytest.mark.parametrize("bad", [None, math.nan, math.inf])
def test_candidate_scores_fall_back_to_ranks(bad: float | None) -> None:
    got = candidate_scores([5.0, bad, 1.0, 0.5])
    np.testing.assert_allclose(got, -np.log([1.0, 2.0, 3.0, 4.0]), rtol=0, atol=0)


def test_rank_based_plackett_luce_weights_are_rank_powers() -> None:
    """With no scores, P(i first) = (i + 1)^(-1/τ) / Σ_b (b + 1)^(-1/τ), and the rest matches enumeration."""
    tau = 0.7
    scores = [None] * 5
    marg = slot_marginals(_pl(tau), scores, 3)
    w = np.arange(1, 6, dtype=np.float64) ** (-1.0 / tau)
    np.testing.assert_allclose(marg[:, 0], w / w.sum(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(marg, _pl_truth(-np.log(np.arange(1.0, 6.0)), tau, 3), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- marginals


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 4.0, 20.0])
def test_plackett_luce_marginals_equal_enumeration(temperature: float) -> None:
    rng = np.random.default_rng(int(temperature * 100))
    for m in (4, 5, 6):
        for k in range(1, m + 1):
            scores = rng.normal(size=m) * rng.choice([0.2, 1.0, 3.0])
            got = slot_marginals(_pl(temperature), list(scores), k)
            np.testing.assert_allclose(got, _pl_truth(scores, temperature, k), rtol=0, atol=1e-9)


def test_tiny_plackett_luce_marginals_keep_relative_accuracy() -> None:
    """Propensities are divisors: a small one must be right relative to its size, not only to 1e-16."""
    scores = np.array([0.0, -0.3, -1.2, -2.0, -2.6])
    tau = 0.08  # log-weights down to -32: marginals from about 1 down to about 1e-29
    got = slot_marginals(_pl(tau), list(scores), 4)
    truth = _pl_truth(scores, tau, 4)
    small = (truth > 1e-14) & (truth < 1e-6)
    assert small.sum() >= 4
    np.testing.assert_allclose(got[small], truth[small], rtol=1e-6, atol=0)


@pytest.mark.parametrize("spread", [30.0, 300.0, 3000.0])
def test_widely_spread_weights_equal_enumeration(spread: float) -> None:
    """Log-weights hundreds apart (weights far below e^-745): nothing is clamped or lost.

    The truth's own rounding is about 1e-16 times the log-weights' size, hence the tolerances.
    """
    rng = np.random.default_rng(int(spread))
    for m in (4, 5, 6):
        scores = rng.normal(size=m) * spread
        for k in (2, m - 1):
            got = slot_marginals(_pl(1.0), list(scores), k)
            truth = _pl_truth(scores, 1.0, k)
            np.testing.assert_allclose(got, truth, rtol=0, atol=1e-12)
            sizable = truth > 1e-12
            np.testing.assert_allclose(got[sizable], truth[sizable], rtol=1e-6, atol=0)


def test_small_temperature_keeps_the_model_order() -> None:
    """At a tiny temperature the slate is the model's top k, with propensity 1 (no clamping to uniform)."""
    scores = list(np.linspace(10.0, 0.0, 40))
    rng = np.random.default_rng(4)
    for _ in range(5):
        slate = choose(_pl(0.001, candidates=40), scores, 10, rng)
        assert slate.indices == tuple(range(10))
        np.testing.assert_allclose(slate.propensities, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("scores", "temperature"),
    [
        ([1000.0, 0.0, -1000.0, -1.0e6, -5.0], 0.05),
        ([3.0, 2.0, 2.0, 1.0, 0.0, -1e300, -1.7e308], 1e-300),  # s / τ overflows
        ([3.0, 2.0, 1.0, 0.0], 5e-324),
    ],
)
def test_extreme_scores_give_no_nan_and_valid_marginals(scores: list[float], temperature: float) -> None:
    got = slot_marginals(_pl(temperature), scores, 3)
    assert np.all(np.isfinite(got)) and np.all(got >= 0) and np.all(got <= 1)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.all(got.sum(axis=1) <= 1.0 + 1e-12)
    slate = choose(_pl(temperature), scores, 3, np.random.default_rng(0))
    assert slate.indices[0] == 0
    assert all(0.0 < p <= 1.0 for p in slate.propensities)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 10.0])
def test_plackett_luce_marginal_matrix_is_doubly_substochastic(temperature: float) -> None:
    """Every shown slot holds exactly one candidate; a candidate sits in at most one slot."""
    rng = np.random.default_rng(7)
    scores = list(np.sort(rng.normal(size=60))[::-1])
    marg = slot_marginals(_pl(temperature, candidates=40), scores, 8)
    assert marg.shape == (60, 8)
    np.testing.assert_allclose(marg.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.all(marg.sum(axis=1) <= 1.0 + 1e-12)
    assert np.all(marg[40:] == 0.0)  # beyond candidates: never shown
    assert np.all(marg[:40] > 0.0)


@pytest.mark.parametrize(("eps", "m", "k"), [(0.1, 4, 2), (0.5, 5, 3), (1.0, 4, 4), (0.3, 3, 1)])
def test_epsilon_greedy_marginals_equal_enumeration(eps: float, m: int, k: int) -> None:
    scores = list(np.linspace(1.0, 0.0, m + 2))  # two candidates beyond `candidates`
    got = slot_marginals(_eps(eps, candidates=m), scores, k)
    np.testing.assert_allclose(got[:m], _eps_truth(eps, m, k), rtol=0, atol=1e-15)
    assert np.all(got[m:] == 0.0)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, rtol=0, atol=1e-12)


def test_none_marginals_are_the_identity() -> None:
    got = slot_marginals(Exploration(), [0.3, 0.2, 0.1], 2)
    np.testing.assert_array_equal(got, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])


def test_slot_marginals_of_given_items_and_errors() -> None:
    scores = [2.0, 1.0, 0.5, 0.0, -1.0]
    full = slot_marginals(_pl(0.5, candidates=4), scores, 3)
    part = slot_marginals(_pl(0.5, candidates=4), scores, 3, items=[3, 0, 4])
    np.testing.assert_allclose(part, full[[3, 0, 4]], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="items"):
        slot_marginals(_pl(), scores, 3, items=[5])
    with pytest.raises(ValueError, match="k must"):
        slot_marginals(_pl(), scores, -1)


# --------------------------------------------------------------------------- choose


def _frequencies(policy: Exploration, scores: list[float], k: int, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(scores), k))
    for _ in range(draws):
        slate = choose(policy, scores, k, rng)
        counts[list(slate.indices), np.arange(k)] += 1
    return counts / draws


def _assert_within_5_se(freq: np.ndarray, marg: np.ndarray, draws: int) -> None:
    se = np.sqrt(marg * (1.0 - marg) / draws)
    assert np.all(np.abs(freq - marg) <= 5.0 * se + 1e-12), np.abs(freq - marg) / np.maximum(se, 1e-300)


def test_epsilon_greedy_choose_frequencies_match_marginals() -> None:
    scores = [1.5, 1.2, 0.4, 0.3, 0.0, -0.2, -1.0, -1.1, -2.0, -3.0]
    policy = _eps(0.3, candidates=8)
    draws = 20_000
    freq = _frequencies(policy, scores, 3, draws, seed=11)
    marg = slot_marginals(policy, scores, 3)
    _assert_within_5_se(freq, marg, draws)
    assert np.all(freq[8:] == 0)


def test_plackett_luce_choose_frequencies_match_marginals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gumbel-top-k sampler of choose draws slates with the quadrature's marginals.

    The marginals are computed once up front; during the 20,000 draws the per-slate
    propensity computation (checked on its own below) is replaced by a constant, so
    that the test counts the sampler alone and stays fast.
    """
    scores = [1.5, 1.2, 0.4, 0.3, 0.0, -0.2, -1.0, -1.1, -2.0, -3.0]
    policy = _pl(0.8, candidates=8)
    marg = slot_marginals(policy, scores, 3)
    monkeypatch.setattr(exploration, "_pl_marginals", lambda logw, items, kk, diagonal=False: np.ones((len(items), kk)))
    draws = 20_000
    freq = _frequencies(policy, scores, 3, draws, seed=12)
    _assert_within_5_se(freq, marg, draws)
    assert np.all(freq[8:] == 0)


@pytest.mark.parametrize("policy", [_eps(0.4, candidates=7), _pl(0.5, candidates=7), _pl(5.0, candidates=12)])
def test_choose_propensities_equal_slot_marginals(policy: Exploration) -> None:
    rng = np.random.default_rng(3)
    scores = list(np.sort(rng.normal(size=15))[::-1])
    marg = slot_marginals(policy, scores, 4)
    m = min(policy.candidates, len(scores))
    for _ in range(60):
        slate = choose(policy, scores, 4, rng)
        assert len(slate.indices) == len(slate.propensities) == 4
        assert len(set(slate.indices)) == 4
        assert all(0 <= i < m for i in slate.indices)
        expected = marg[list(slate.indices), np.arange(4)]
        np.testing.assert_allclose(slate.propensities, expected, rtol=1e-9, atol=1e-15)
        assert all(0.0 < p <= 1.0 for p in slate.propensities)


@pytest.mark.parametrize("policy", [_eps(1.0, candidates=5), _pl(2.0, candidates=5), _pl(0.05, candidates=9)])
def test_choose_never_repeats_nor_leaves_the_candidates(policy: Exploration) -> None:
    rng = np.random.default_rng(5)
    for n in (1, 3, 5, 9, 20):
        scores = list(rng.normal(size=n))
        for k in (1, 3, 6):
            for _ in range(10):
                slate = choose(policy, scores, k, rng)
                m = min(policy.candidates, n)
                assert len(slate.indices) == min(k, m)
                assert len(set(slate.indices)) == len(slate.indices)
                assert all(0 <= i < m for i in slate.indices)


def test_none_shows_the_top_k_with_propensity_one() -> None:
    slate = choose(Exploration(), [0.9, 0.5, 0.4, 0.1], 3, np.random.default_rng(0))
    assert slate == Slate(indices=(0, 1, 2), propensities=(1.0, 1.0, 1.0))
    assert choose(Exploration(), [None, None], 5, np.random.default_rng(0)) == Slate((0, 1), (1.0, 1.0))


@pytest.mark.parametrize("policy", [Exploration(), _eps(0.5), _pl(1.0)])
def test_short_and_empty_candidate_lists(policy: Exploration) -> None:
    rng = np.random.default_rng(0)
    assert choose(policy, [], 5, rng) == Slate((), ())
    assert choose(policy, [1.0, 2.0], 0, rng) == Slate((), ())
    assert slot_marginals(policy, [], 5).shape == (0, 0)
    slate = choose(policy, [2.0, 1.0], 5, rng)
    assert sorted(slate.indices) == [0, 1]
    np.testing.assert_allclose(slate.propensities, slot_marginals(policy, [2.0, 1.0], 5)[list(slate.indices), [0, 1]])
    one = choose(policy, [None], 3, rng)
    assert one == Slate((0,), (1.0,))
    with pytest.raises(ValueError, match="k must"):
        choose(policy, [1.0], -1, rng)


def test_fewer_candidates_than_slots_shows_a_shorter_slate() -> None:
    scores = [5.0, 4.0, 3.0, 2.0, 1.0]
    slate = choose(_pl(1.0, candidates=2), scores, 4, np.random.default_rng(1))
    assert sorted(slate.indices) == [0, 1]
    assert slot_marginals(_pl(1.0, candidates=2), scores, 4).shape == (5, 2)


def test_choose_with_missing_scores_is_rank_based() -> None:
    """A None score makes choose use the same rank-based weights as candidate_scores."""
    scores = [3.0, None, 1.0, 0.0, -4.0]
    marg = slot_marginals(_pl(0.5), scores, 2)
    np.testing.assert_allclose(marg, _pl_truth(-np.log(np.arange(1.0, 6.0)), 0.5, 2), rtol=0, atol=1e-12)
    rng = np.random.default_rng(9)
    for _ in range(20):
        slate = choose(_pl(0.5), scores, 2, rng)
        np.testing.assert_allclose(slate.propensities, marg[list(slate.indices), [0, 1]], rtol=1e-9)
