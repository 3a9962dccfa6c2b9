"""The flash-sale simulation itself (pure numpy): counts, world, time, funnel, sales, sequence signal."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import numpy as np
import pytest

from sparktf.config import GeneratorConfig
from sparktf.data.generator import (
    BLOCK_USERS,
    EVENT_TYPES,
    Simulation,
    build_catalog,
    num_blocks,
    simulate_block,
    user_quotas,
)

SMALL = GeneratorConfig(num_events=60_000, num_users=1_500, num_items=800, num_categories=12, num_brands=30, days=10)
VIEW, CART, BUY = (EVENT_TYPES.index(t) for t in ("view", "add_to_cart", "purchase"))


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate_block(SMALL, 0)


@pytest.mark.parametrize(("events", "users"), [(10_000, 20_000), (60_000, 1_500), (1_000_003, 7_919), (10_000, 1)])
def test_quotas_sum_to_exactly_the_events_asked_for(events: int, users: int) -> None:
    q = user_quotas(GeneratorConfig(num_events=events, num_users=users, num_items=100, num_categories=10))
    assert q.sum() == events and q.min() >= 0 and q.size == users


def test_activity_is_heavy_tailed() -> None:
    q = user_quotas(SMALL)
    assert q.max() > 5 * np.median(q)


def test_a_block_makes_exactly_its_users_quotas(sim: Simulation) -> None:
    quotas = user_quotas(SMALL)
    assert num_blocks(SMALL) == 1 and sim.user.size == SMALL.num_events
    assert (np.bincount(sim.user, minlength=SMALL.num_users) == quotas).all()
    cfg = GeneratorConfig(num_events=20_000, num_users=BLOCK_USERS + 300, num_items=300, num_categories=10)
    sizes = [simulate_block(cfg, b).user.size for b in range(num_blocks(cfg))]
    assert num_blocks(cfg) == 2 and sum(sizes) == cfg.num_events
    assert set(simulate_block(cfg, 1).user) <= set(range(BLOCK_USERS, cfg.num_users))


def test_same_seed_same_events_other_seed_other_events(sim: Simulation) -> None:
    again = simulate_block(SMALL, 0)
    for name in ("user", "time", "item", "event", "session", "price", "sale"):
        assert np.array_equal(getattr(sim, name), getattr(again, name)), name
    other = simulate_block(dataclasses.replace(SMALL, seed=7), 0)
    assert not np.array_equal(other.item, sim.item)


def test_catalogue_structure() -> None:
    cat = build_catalog(SMALL)
    assert np.isclose(cat.popularity.sum(), 1.0)
    assert set(cat.category) == set(range(SMALL.num_categories))  # no empty category
    items = np.arange(SMALL.num_items)[:, None]
    assert not (cat.successors == items).any()
    same = cat.category[cat.successors] == cat.category[:, None]
    sizes = np.bincount(cat.category)
    assert same[sizes[cat.category] > 1].all()  # successors stay in the category when it has room
    assert ((cat.price > 0) & np.isfinite(cat.price)).all()
    assert cat.sale_start.size == SMALL.days * SMALL.sales_per_day
    assert (cat.sale_end > cat.sale_start).all() and (cat.sale_start[1:] >= cat.sale_end[:-1]).all()
    assert all(len(set(row)) == SMALL.items_per_sale for row in cat.sale_items)


def _by_user(sim: Simulation) -> dict[str, np.ndarray]:
    same_user = sim.user[1:] == sim.user[:-1]
    return {"same_user": same_user, "gap": np.diff(sim.time)}


def test_time_runs_forward_and_sessions_are_separated_by_half_an_hour(sim: Simulation) -> None:
    d = _by_user(sim)
    same_user, gap = d["same_user"], d["gap"]
    assert (gap[same_user] > 0).all()  # strictly increasing per user: no exact duplicates
    same_session = same_user & (sim.session[1:] == sim.session[:-1])
    new_session = same_user & (sim.session[1:] == sim.session[:-1] + 1)
    assert (same_session | new_session)[same_user].all()  # sessions are numbered consecutively
    assert gap[same_session].max() < 30 * 60
    assert gap[new_session].min() > 30 * 60
    start = build_catalog(SMALL).start
    assert sim.time.min() >= start


def test_funnel_view_then_cart_then_purchase(sim: Simulation) -> None:
    counts = np.bincount(sim.event, minlength=3)
    assert counts[VIEW] > 5 * counts[CART] > 0 and counts[CART] > counts[BUY] > 0
    same_user = np.r_[False, sim.user[1:] == sim.user[:-1]]
    prev_event = np.r_[-1, sim.event[:-1]]
    prev_item = np.r_[-1, sim.item[:-1]]
    carts = sim.event == CART
    assert (same_user & (prev_event == VIEW) & (prev_item == sim.item))[carts].all()
    buys = sim.event == BUY
    assert (same_user & (prev_event == CART) & (prev_item == sim.item))[buys].all()


def test_flash_sales_discount_their_items_and_sell_more(sim: Simulation) -> None:
    cat = build_catalog(SMALL)
    on = sim.sale >= 0
    assert 0.02 < on.mean() < 0.5
    k = sim.sale[on]
    assert (sim.time[on] >= cat.sale_start[k]).all()
    view_on = on & (sim.event == VIEW)  # a cart or purchase keeps the sale (and price) of its view
    kv = sim.sale[view_on]
    assert (sim.time[view_on] < cat.sale_end[kv]).all()
    follow_up = on & (sim.event != VIEW)
    assert np.array_equal(sim.sale[np.flatnonzero(follow_up) - 1], sim.sale[follow_up])
    assert all(item in cat.sale_items[s] for item, s in zip(sim.item[on][:500], k[:500], strict=True))
    assert np.allclose(sim.price[on], np.round(cat.price[sim.item[on]] * 0.7, 2))
    assert np.array_equal(sim.price[~on], cat.price[sim.item[~on]])
    views = sim.event == VIEW
    carts_next = np.r_[sim.event[1:] == CART, False]
    assert carts_next[views & on].mean() > 1.5 * carts_next[views & ~on].mean()


def _next_item_hits(sim: Simulation) -> tuple[float, float]:
    """Hit rates of "top-1 successor of the current item" and "most popular item" for the next view.

    Fitted on the transitions of even users, measured on odd users, so the statistic
    is a held-out prediction and not a memorised one.
    """
    v = sim.event == VIEW
    user, item, session = sim.user[v], sim.item[v], sim.session[v]
    pair = (user[1:] == user[:-1]) & (session[1:] == session[:-1])
    cur, nxt, who = item[:-1][pair], item[1:][pair], user[:-1][pair]
    fit, held = who % 2 == 0, who % 2 == 1
    succ: dict[int, Counter[int]] = defaultdict(Counter)
    for a, b in zip(cur[fit], nxt[fit], strict=True):
        succ[int(a)][int(b)] += 1
    top = {a: c.most_common(1)[0][0] for a, c in succ.items()}
    popular = Counter(nxt[fit].tolist()).most_common(1)[0][0]
    successor_hits = np.mean([top.get(int(a), -1) == b for a, b in zip(cur[held], nxt[held], strict=True)])
    return float(successor_hits), float(np.mean(nxt[held] == popular))


def test_next_item_follows_the_current_one_far_above_popularity(sim: Simulation) -> None:
    successor, popular = _next_item_hits(sim)
    assert successor > 0.2 and successor > 3 * popular


def test_without_successor_following_the_signal_is_gone() -> None:
    flat = simulate_block(dataclasses.replace(SMALL, follow_probability=0.0), 0)
    successor, popular = _next_item_hits(flat)
    assert successor < 1.2 * popular  # no better than "most popular"


def _sibling_share(sim: Simulation, cfg: GeneratorConfig) -> float:
    """Share of views after a followed successor (B after A) that are another successor of A."""
    succ = build_catalog(cfg).successors
    v = sim.event == VIEW
    user, item, session = sim.user[v], sim.item[v], sim.session[v]
    same = (user[2:] == user[:-2]) & (session[2:] == session[:-2])
    a, b, c = item[:-2][same], item[1:-1][same], item[2:][same]
    followed = (succ[a] == b[:, None]).any(axis=1)
    sibling = (succ[a] == c[:, None]).any(axis=1) & (c != b)
    return float(sibling[followed].mean())


def test_back_navigation_makes_the_item_before_the_last_one_matter(sim: Simulation) -> None:
    # With back navigation, what follows B (reached from A) is often another of A's
    # successors: structure that B alone does not determine.
    without = dataclasses.replace(SMALL, back_probability=0.0)
    with_back, no_back = _sibling_share(sim, SMALL), _sibling_share(simulate_block(without, 0), without)
    assert with_back > no_back + 0.5 * SMALL.back_probability
    assert no_back < 0.15  # what remains is chance: siblings are also popular items of the category


def test_the_mixture_replays_the_tastes_and_ranks_the_true_next_view_high(sim: Simulation) -> None:
    from sparktf.data.generator import next_view_mixture

    v = sim.event == VIEW
    user, item = sim.user[v], sim.item[v]
    ends = np.flatnonzero(user[1:] != user[:-1])[:300]  # each user's last view
    starts = np.searchsorted(user, user[ends])
    queries = [
        (int(user[e]), item[max(s, e - 10) : e], int(item[e])) for s, e in zip(starts, ends, strict=True) if e > s
    ]
    p = next_view_mixture(SMALL, np.array([q[0] for q in queries]), [q[1] for q in queries])
    assert np.allclose(p.sum(axis=1), 1.0)
    target = np.array([q[2] for q in queries])

    def hit_rate(scores: np.ndarray) -> float:
        return float(((scores > scores[np.arange(len(target)), target][:, None]).sum(axis=1) < 10).mean())

    popularity = np.broadcast_to(build_catalog(SMALL).popularity, p.shape)
    assert hit_rate(p) > hit_rate(popularity) + 0.25
    # Someone else's tastes predict worse: the replayed tastes are the users' own.
    others = np.roll(np.array([q[0] for q in queries]), 1)
    assert hit_rate(p) > hit_rate(next_view_mixture(SMALL, others, [q[1] for q in queries])) + 0.02
