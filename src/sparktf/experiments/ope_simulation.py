"""Off-policy estimates checked against the simulated shoppers' truth (issue 18's check).

One trial, all in this process (:class:`~sparktf.experiments.simulator.PolicyShop`):

1. **Log**: the shoppers of ``seed`` meet the *champion*, which explores (its
   :class:`~sparktf.experiments.exploration.Exploration`), and every shown slot is logged
   with its propensity. The shop also records what the *challenger* would have shown in
   each context, so the simulator knows the challenger's true CTR on these very contexts.
2. **Estimate**: IPS, SNIPS and DR of the challenger's CTR from that log
   (:func:`sparktf.experiments.ope.estimate`, DR's reward model fitted on the log).
3. **Online**: the same shoppers (same seed) meet the challenger, deterministic: its true
   CTR online, from the shoppers' known click probabilities.
4. **Cost of exploring**: the same shoppers meet the champion without exploration; its true
   CTR against the exploring champion's is what exploration cost.

The policies rank by the generator's true next-view probabilities for the user and their
last two items, blurred by a fixed random per-item noise (``champion_noise`` and
``challenger_noise``, the standard deviations of the noise on the log score), so they are
good but imperfect, and differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparktf.config import GeneratorConfig
from sparktf.experiments.exploration import Exploration
from sparktf.experiments.ope import estimate, reward_from_log
from sparktf.experiments.simulator import PolicyShop, Scorer, ShopperSimulator, item_index

__all__ = ["SMALL_WORLD", "TrialSettings", "noisy_truth_scorer", "offpolicy_trial"]

#: The ``[generator]`` of the seeded trials (``generator.<key>`` settings): 1,500 users, 200 items.
SMALL_WORLD = {
    "num_events": 20_000,
    "num_users": 1_500,
    "num_items": 200,
    "num_categories": 6,
    "num_brands": 12,
    "days": 4,
}


@dataclass(frozen=True)
class TrialSettings:
    """One trial's knobs (the defaults are the BENCHMARKS.md run)."""

    sessions: int = 1500
    k: int = 10
    position_bias: float = 1.0
    steps_per_session: float = 6.0
    exploration: Exploration = field(
        default_factory=lambda: Exploration("plackett_luce", temperature=1.0, candidates=50)
    )
    champion_noise: float = 1.0
    challenger_noise: float = 0.5
    clip: float = math.inf
    alpha: float = 0.05


def noisy_truth_scorer(sim: ShopperSimulator, noise: float, seed: int) -> Scorer:
    """A policy scoring items by ``log P(next view)`` (the user's taste and their last two
    items) plus a fixed per-item normal noise of standard deviation ``noise``."""
    n = sim.truth.catalog.num_items
    blur = np.random.default_rng([seed, 0xB1, int(noise * 1000)]).normal(0.0, noise, n)

    def score(user_id: str, history: Any) -> np.ndarray:
        u = int(user_id[1:])
        items = [i for i in (item_index(x) for x in list(history)[-2:]) if i is not None]
        p = sim.truth.probabilities(u, items)
        return np.asarray(np.log(p + 1e-12) + blur, dtype=np.float64)

    return score


def _run(sim: ShopperSimulator, shop: PolicyShop, sessions: int) -> Any:
    return sim.run(lambda: shop, duration_s=1e9, rate=1e9, concurrency=1, max_sessions=sessions)


def offpolicy_trial(generator: GeneratorConfig, seed: int, settings: TrialSettings = TrialSettings()) -> dict[str, Any]:
    """Run one trial (see the module docstring); the estimates and the truths."""
    s = settings

    def simulator() -> ShopperSimulator:
        return ShopperSimulator(
            generator,
            seed=seed,
            k=s.k,
            position_bias=s.position_bias,
            steps_per_session=s.steps_per_session,
            clock=lambda: 0.0,
        )

    sim = simulator()
    champion = noisy_truth_scorer(sim, s.champion_noise, seed)
    challenger = noisy_truth_scorer(sim, s.challenger_noise, seed + 1)
    log_shop = PolicyShop(
        lambda u: "champion", {"champion": champion}, {"champion": s.exploration}, target=challenger, seed=seed
    )
    logged = _run(sim, log_shop, s.sessions).arms["champion"]
    log = log_shop.log()
    model = reward_from_log(list(log["item_id"]), log["position"], log["reward"])
    target = log["target_item"]
    has_target = target != ""
    est = estimate(
        log["propensity"],
        log["reward"],
        (log["item_id"] == target).astype(np.float64),
        unit=list(log["user_id"]),
        q_logged=model.q(list(log["item_id"]), log["position"]),
        q_target=np.where(has_target, model.q(list(target), log["position"]), 0.0),
        clip=s.clip,
        alpha=s.alpha,
    )
    online = _run(simulator(), PolicyShop(lambda u: "challenger", {"challenger": challenger}), s.sessions)
    greedy = _run(simulator(), PolicyShop(lambda u: "champion", {"champion": champion}), s.sessions)
    truth = online.arms["challenger"].true_ctr
    out: dict[str, Any] = {
        "seed": seed,
        "slots": int(log["reward"].size),
        "clicks": int(log["reward"].sum()),
        "challenger_true_ctr_online": truth,
        "challenger_true_ctr_on_logged_contexts": logged.target_true_ctr,
        "champion_true_ctr_exploring": logged.true_ctr,
        "champion_true_ctr_greedy": greedy.arms["champion"].true_ctr,
        # The share of the challenger's shown items the exploring champion could have shown at all.
        "support": log_shop.target_supported / max(log_shop.target_slots, 1),
        "diagnostics": est["diagnostics"],
    }
    for name in ("ips", "snips", "dr"):
        e = est[name]
        out[name] = {
            **e.to_dict(),
            "covers_online": bool(e.ci_low <= truth <= e.ci_high),
            "covers_logged_contexts": bool(e.ci_low <= logged.target_true_ctr <= e.ci_high),
        }
    return out
