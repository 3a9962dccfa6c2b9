"""The synthetic flash-sale clickstream, generated in Spark and deterministic by seed.

No public e-commerce clickstream can be fetched at run time (see
docs/data-contract.md and the recsys reference), and the usual synthetic
generators draw items independently, which leaves nothing for a sequence model to
learn. This one builds a small world and simulates shoppers in it:

* a catalogue of items with a category, a brand and a price, and Zipf-like
  popularity (``generator.popularity_exponent``);
* a sparse "what people look at next" structure: every item has
  ``generator.successors_per_item`` successors in its own category, and a shopper
  follows one of them with probability ``generator.follow_probability``, so
  P(next | current) is far above popularity;
* back navigation: a shopper who followed a successor goes back to the page they
  came from and opens another of its successors with probability
  ``generator.back_probability``. Real shoppers compare the items one page
  offers; in the data it is second-order structure (the next item depends on the
  one before the current one) that a last-item Markov chain cannot see and a
  sequence model can;
* per-user affinity for two categories and one brand;
* daily flash sales that open ``items_per_sale`` items at a discount for a window
  of a few hours; shoppers are drawn to them and buy more while they run;
* sessions separated by more than 30 minutes of inactivity (events inside a
  session are at most about 22 minutes apart), and a view → add_to_cart →
  purchase funnel with decreasing probabilities;
* optionally a drift (``generator.drift``) away from the world a model was
  trained on, to try the monitoring with: ``drift_share`` of every next view goes
  to the least viewed category (``category_surge``, by popularity, so that the shift
  is as large as the share allows) or to a standing flash sale of items with ids
  after the catalogue's (``unseen_items``), which no model trained on the undrifted
  world knows. Measured with the default world and share 0.5: the surge category
  goes from 0.6% of the views to 68% (shoppers it brings there follow its
  successors, which stay in it), the unseen items take 50.1%. Without a drift
  (``none``) the events are exactly those of a world without the option: the drift
  draws only after the undrifted draws, and from a stream of its own for its items.

Distribution: users are cut into fixed blocks of :data:`BLOCK_USERS`; a Spark task
simulates whole blocks with a numpy generator seeded by ``(seed, block)`` and
returns Arrow batches (``mapInArrow``). The catalogue is rebuilt from the seed in
each Python worker instead of being broadcast, and nothing event-sized is ever
collected to the driver. Because randomness is tied to blocks, not to Spark
partitions, the events do not depend on how many partitions or cores run them.

The simulation itself (:func:`build_catalog`, :func:`user_quotas`,
:func:`simulate_block`) is pure numpy, so its structure is tested without Spark.

Example:
    >>> from sparktf.config import GeneratorConfig
    >>> sim = simulate_block(GeneratorConfig(num_events=10_000, num_users=200), 0)
    >>> int(sim.user.size)
    10000
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.config import GeneratorConfig
from sparktf.data.schema import EVENTS_DDL

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "BLOCK_USERS",
    "EVENT_TYPES",
    "NextView",
    "Simulation",
    "SyntheticCatalog",
    "build_catalog",
    "category_name",
    "funnel_probabilities",
    "generate_events",
    "next_view_mixture",
    "num_blocks",
    "simulate_block",
    "surge_category",
    "unseen_items",
    "user_quotas",
]

#: Users simulated together with one random generator; fixed so that results do not
#: depend on Spark's partitioning. Changing it changes every generated dataset.
BLOCK_USERS = 2048

#: The event types the generator writes, in funnel order.
EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase")

_DAY = 86_400
_SESSION_GAP_MIN_S = 31 * 60  # just over the 30-minute sessionization default
_MEAN_SESSION_STEPS = 6.0
_MEAN_DWELL_S = 60.0
_MAX_DWELL_S = 900  # with the funnel delays below, in-session gaps stay under ~22 min
_P_SALE = 0.25  # when a sale runs and the shopper does not follow a successor
_P_CATEGORY = 0.45
_P_BRAND = 0.15
_P_FIRST_CATEGORY = 0.7
_P_CART, _P_CART_SALE, _P_PURCHASE = 0.08, 0.20, 0.35
_SALE_DISCOUNT = 0.30
_MAX_ACTIVITY = 20.0  # cap on a user's activity weight (lognormal, median 1)
_BATCH_ROWS = 200_000


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True, eq=False)
class _GroupSampler:
    """Draws an item of a given group (category or brand) with probability ∝ popularity.

    Items are sorted by group; ``key`` holds ``group + cumulative share within the
    group``, so one ``searchsorted`` samples a whole vector of (group, uniform) pairs.
    """

    order: np.ndarray
    key: np.ndarray
    groups: np.ndarray  # the group of each position of ``order`` (sorted)

    @classmethod
    def build(cls, group: np.ndarray, weight: np.ndarray) -> _GroupSampler:
        order = np.argsort(group, kind="stable")
        g = group[order]
        w = weight[order]
        cum = np.cumsum(w)
        first = np.searchsorted(g, g, side="left")
        last = np.searchsorted(g, g, side="right") - 1
        before = cum[first] - w[first]
        key = g + (cum - before) / (cum[last] - before)
        key[last] = g[last] + 1.0  # exact group ends, whatever the rounding
        return cls(order=order, key=key, groups=g)

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.key, groups + u, side="right")
        items: np.ndarray = self.order[np.minimum(idx, self.order.size - 1)]
        return items

    def other(self, groups: np.ndarray, items: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A uniform item of each group other than ``items`` (the item itself if it is alone)."""
        first = np.searchsorted(self.groups, groups, side="left")
        size = np.searchsorted(self.groups, groups, side="right") - first
        pick = self.order[first + (u * np.maximum(size - 1, 0)).astype(np.int64)]
        last = self.order[first + size - 1]
        chosen: np.ndarray = np.where(pick == items, last, pick)
        return chosen


@dataclass(frozen=True, eq=False)
class SyntheticCatalog:
    """The generated world: items, their successors and the flash sales.

    Attributes:
        category, brand: ``[num_items]`` group index of each item.
        price: ``[num_items]`` list price.
        popularity: ``[num_items]`` probability of an item under global popularity
            (0 for the ``unseen_items`` drift's items: only the drift leads to them).
        successors: ``[num_items, successors_per_item]`` the items looked at next,
            most likely first.
        successor_cdf: ``[successors_per_item]`` cumulative probability of each successor.
        sale_start, sale_end: ``[num_sales]`` window of each sale, epoch seconds.
        sale_items: ``[num_sales, items_per_sale]`` the items each sale opens.
        start: epoch seconds of ``generator.start_date``.
        base_items: the items of the undrifted world, indices ``0 .. base_items - 1``;
            the ``unseen_items`` drift's items follow them.
        drift_share: the share of every next view that goes to the drift (0: no drift).
        drift_items: the items the drift's share goes to (the surge category's, or the
            unseen ones), with ``drift_p`` the probability of each among them.
        surge_category: the category of ``category_surge``, or -1.
    """

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    popularity: np.ndarray
    successors: np.ndarray
    successor_cdf: np.ndarray
    sale_start: np.ndarray
    sale_end: np.ndarray
    sale_items: np.ndarray
    start: int
    base_items: int
    drift_share: float
    drift_items: np.ndarray
    drift_p: np.ndarray
    surge_category: int
    _popularity_cdf: np.ndarray
    _by_category: _GroupSampler
    _by_brand: _GroupSampler
    _sale_keys: np.ndarray
    _drift_cdf: np.ndarray

    @property
    def num_items(self) -> int:
        return int(self.category.size)

    @property
    def unseen_items(self) -> np.ndarray:
        """The ``unseen_items`` drift's items (indices from ``base_items`` on; empty without it)."""
        return np.arange(self.base_items, self.num_items)

    @property
    def unseen_sale(self) -> int:
        """The sale index of the unseen items' standing sale: the one after the scheduled sales."""
        return int(self.sale_start.size)

    def drift_draw(self, u: np.ndarray) -> np.ndarray:
        """Items drawn from the drift's distribution, one per uniform in ``u``."""
        pos = np.minimum(np.searchsorted(self._drift_cdf, u, side="right"), self.drift_items.size - 1)
        items: np.ndarray = self.drift_items[pos]
        return items

    def drift_other(self, items: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each drift item in ``items``, another drift item drawn ∝ ``drift_p`` (a redraw
        that leaves the item out). Needs at least two drift items.

        A drift draw of the item just viewed is drawn again among the drift's others, not
        by popularity as the undrifted rule does, so the drift keeps exactly its share; a
        second look at once would collapse into one step in the features anyway.
        """
        pos = np.searchsorted(self.drift_items, items)
        cdf = self._drift_cdf
        lo = np.where(pos > 0, cdf[np.maximum(pos - 1, 0)], 0.0)
        width = cdf[pos] - lo
        v = u * (1.0 - width)
        v = np.where(v >= lo, v + width, v)  # skip the item's own stretch of the cdf
        size = self.drift_items.size
        got = np.minimum(np.searchsorted(cdf, v, side="right"), size - 1)
        got = np.where(got == pos, (pos + 1) % size, got)  # a rounding edge, never the item itself
        others: np.ndarray = self.drift_items[got]
        return others

    def drift_distribution(self, last: int = -1, *, no_repeat: bool = False) -> np.ndarray:
        """``[num_items]`` the drift's next-view distribution after item ``last`` (-1: none).

        With ``no_repeat``, the simulation's rule: a drift draw of ``last`` is redrawn among
        the other drift items, or, when the drift has no other, becomes a popularity draw.
        """
        out = np.zeros(self.num_items)
        out[self.drift_items] = self.drift_p
        if no_repeat and last >= 0 and out[last] > 0.0:
            again = out[last]
            out[last] = 0.0
            if self.drift_items.size > 1:
                out /= 1.0 - again
            else:
                out += again * self.popularity
        return out

    def popular(self, u: np.ndarray) -> np.ndarray:
        """Items drawn by global popularity, one per uniform in ``u``."""
        return np.minimum(np.searchsorted(self._popularity_cdf, u, side="right"), self.num_items - 1)

    def in_category(self, categories: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self._by_category.sample(categories, u)

    def of_brand(self, brands: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self._by_brand.sample(brands, u)

    def active_sale(self, t: np.ndarray, sales_per_day: int) -> np.ndarray:
        """The sale running at each time in ``t`` (epoch seconds), or -1."""
        if self.sale_start.size == 0:
            return np.full(t.shape, -1, dtype=np.int64)
        slot_len = _DAY // sales_per_day
        rel = t - self.start
        day = rel // _DAY
        slot = (rel % _DAY) // slot_len
        k = day * sales_per_day + slot
        valid = (rel >= 0) & (slot < sales_per_day) & (k < self.sale_start.size)
        ks = np.where(valid, k, 0)
        active = valid & (t >= self.sale_start[ks]) & (t < self.sale_end[ks])
        return np.where(active, k, -1)

    def on_sale(self, sale: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each item is one of the items of the sale next to it (-1 = none); the
        unseen items are on sale whatever the time (their own sale, :attr:`unseen_sale`)."""
        unseen = items >= self.base_items
        if self._sale_keys.size == 0:
            return np.zeros(sale.shape, dtype=bool) | unseen
        keys = sale * self.base_items + items
        pos = np.minimum(np.searchsorted(self._sale_keys, keys), self._sale_keys.size - 1)
        member: np.ndarray = ((sale >= 0) & (self._sale_keys[pos] == keys) & ~unseen) | unseen
        return member


def _epoch_seconds(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp())


def _zipf(n: int, exponent: float) -> np.ndarray:
    w: np.ndarray = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / float(w.sum())


def _least_viewed(category: np.ndarray, popularity: np.ndarray, num_categories: int) -> int:
    """The category with the least popularity mass (the lowest index among equals)."""
    return int(np.argmin(np.bincount(category, weights=popularity, minlength=num_categories)))


@functools.lru_cache(maxsize=4)
def build_catalog(cfg: GeneratorConfig) -> SyntheticCatalog:
    """Build the world of ``cfg`` (items, successors, sales); same config, same world.

    The drift (``generator.drift``) adds to the world without changing it: its own random
    stream draws the unseen items, so items ``0 .. num_items - 1`` and everything about them
    are those of the undrifted world whatever the drift.
    """
    rng = np.random.default_rng([cfg.seed, 0xCA7A])
    n, c, b = cfg.num_items, cfg.num_categories, cfg.num_brands
    popularity = _zipf(n, cfg.popularity_exponent)[rng.permutation(n)]
    category = rng.choice(c, size=n, p=_zipf(c, 0.8))
    category[rng.permutation(n)[:c]] = np.arange(c)  # every category has an item
    brand = rng.choice(b, size=n, p=_zipf(b, 1.0))
    base = rng.lognormal(np.log(30.0), 0.8, size=c)
    price = np.round(np.clip(base[category] * rng.lognormal(0.0, 0.4, size=n), 0.5, 5000.0), 2)
    by_category = _GroupSampler.build(category, popularity)

    # Successors come from the item's own category, by popularity; an item that drew
    # itself gets another item of its category (or, alone in it, any other item).
    k = cfg.successors_per_item
    own = np.repeat(np.arange(n), k)
    succ = by_category.sample(category[own], rng.random(own.size))
    clash = succ == own
    succ[clash] = by_category.other(category[own[clash]], own[clash], rng.random(int(clash.sum())))
    clash = succ == own
    succ[clash] = (own[clash] + 1 + rng.integers(0, max(n - 1, 1), int(clash.sum()))) % n
    weights = 0.35 ** np.arange(k)
    successor_cdf = np.cumsum(weights / weights.sum())
    successor_cdf[-1] = 1.0

    start = _epoch_seconds(cfg.start_date)
    num_sales = cfg.days * cfg.sales_per_day
    if num_sales:
        slot_len = _DAY // cfg.sales_per_day
        sale = np.arange(num_sales)
        slot_start = start + (sale // cfg.sales_per_day) * _DAY + (sale % cfg.sales_per_day) * slot_len
        sale_start = slot_start + rng.integers(0, slot_len // 2, size=num_sales)
        sale_end = sale_start + rng.integers(slot_len // 4, slot_len // 2 + 1, size=num_sales)
        # Flash sales favour mid-popularity items too, not only the head.
        sale_p = np.sqrt(popularity)
        sale_p /= sale_p.sum()
        sale_items = np.stack(
            [np.sort(rng.choice(n, size=cfg.items_per_sale, replace=False, p=sale_p)) for _ in range(num_sales)]
        )
    else:
        sale_start = sale_end = np.zeros(0, dtype=np.int64)
        sale_items = np.zeros((0, cfg.items_per_sale), dtype=np.int64)
    sale_keys = np.sort((np.arange(num_sales)[:, None] * n + sale_items).ravel())
    cdf = np.cumsum(popularity)
    cdf[-1] = 1.0
    by_brand = _GroupSampler.build(brand, popularity)
    successors = succ.reshape(n, k)

    surge, drift_p = -1, np.zeros(0)
    drift_items: np.ndarray = np.zeros(0, dtype=np.int64)  # sorted
    if cfg.drift == "category_surge":
        surge = _least_viewed(category, popularity, c)
        drift_items = np.flatnonzero(category == surge)
        drift_p = popularity[drift_items] / popularity[drift_items].sum()
    elif cfg.drift == "unseen_items":
        # Drawn like the catalogue's items, from a stream of their own; their successors
        # are items of their category that models know, so a shopper goes on from them.
        new = np.random.default_rng([cfg.seed, 0xD21F7])
        m = max(cfg.items_per_sale, 1)
        new_category = new.choice(c, size=m, p=_zipf(c, 0.8))
        new_brand = new.choice(b, size=m, p=_zipf(b, 1.0))
        new_price = np.round(np.clip(base[new_category] * new.lognormal(0.0, 0.4, size=m), 0.5, 5000.0), 2)
        new_successors = by_category.sample(np.repeat(new_category, k), new.random(m * k)).reshape(m, k)
        category = np.concatenate([category, new_category])
        brand = np.concatenate([brand, new_brand])
        price = np.concatenate([price, new_price])
        popularity = np.concatenate([popularity, np.zeros(m)])
        successors = np.concatenate([successors, new_successors])
        drift_items, drift_p = np.arange(n, n + m), np.full(m, 1.0 / m)  # uniform, as a sale's items
    drift_cdf = np.cumsum(drift_p)
    if drift_cdf.size:
        drift_cdf[-1] = 1.0
    return SyntheticCatalog(
        category=category,
        brand=brand,
        price=price,
        popularity=popularity,
        successors=successors,
        successor_cdf=successor_cdf,
        sale_start=sale_start.astype(np.int64),
        sale_end=sale_end.astype(np.int64),
        sale_items=sale_items,
        start=start,
        base_items=n,
        drift_share=cfg.drift_share if cfg.drift != "none" else 0.0,
        drift_items=drift_items,
        drift_p=drift_p,
        surge_category=surge,
        _popularity_cdf=cdf,
        _by_category=by_category,
        _by_brand=by_brand,
        _sale_keys=sale_keys,
        _drift_cdf=drift_cdf,
    )


def surge_category(cfg: GeneratorConfig) -> int:
    """The category ``category_surge`` makes surge in ``cfg``'s world, whatever ``cfg.drift``:
    the one with the least popularity mass, the least viewed of the undrifted world (named
    :func:`category_name` in the events)."""
    cat = build_catalog(cfg)
    n = cat.base_items
    return _least_viewed(cat.category[:n], cat.popularity[:n], cfg.num_categories)


def unseen_items(cfg: GeneratorConfig) -> np.ndarray:
    """The item indices of the ``unseen_items`` drift (``num_items .. num_items + n - 1``, with
    ``n = max(items_per_sale, 1)``, ids ``i<index>``); empty under any other drift."""
    return build_catalog(cfg).unseen_items


def category_name(category: int) -> str:
    """The events' name of category index ``category`` (``cat_007``)."""
    return f"cat_{category:03d}"


@functools.lru_cache(maxsize=4)
def user_quotas(cfg: GeneratorConfig) -> np.ndarray:
    """Events per user: heavy-tailed activity, summing to exactly ``num_events``.

    Largest-remainder rounding of ``num_events`` shared in proportion to a capped
    lognormal activity weight; users whose share rounds to zero have no events.
    """
    rng = np.random.default_rng([cfg.seed, 0x05E5])
    w = np.minimum(rng.lognormal(0.0, 1.0, size=cfg.num_users), _MAX_ACTIVITY)
    exact = cfg.num_events * w / w.sum()
    quota: np.ndarray = np.floor(exact).astype(np.int64)
    short = cfg.num_events - int(quota.sum())
    if short:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    return quota


def num_blocks(cfg: GeneratorConfig) -> int:
    """How many user blocks (independent random streams) ``cfg`` has."""
    return math.ceil(cfg.num_users / BLOCK_USERS)


# --------------------------------------------------------------------------- the shoppers


@dataclass(frozen=True, eq=False)
class Simulation:
    """The events of one block, sorted by user then time (all arrays have one row per event).

    Attributes:
        user: global user index.
        time: epoch seconds.
        item: item index.
        event: index into :data:`EVENT_TYPES`.
        session: the user's session number (0, 1, ...).
        price: price shown (discounted during a sale the item is in).
        sale: sale index, or -1 outside a sale. A cart or purchase keeps the sale and
            price of the view it follows, even when it lands just after the sale ends.
            The ``unseen_items`` drift's items are always in their own sale,
            :attr:`SyntheticCatalog.unseen_sale`.
    """

    user: np.ndarray
    time: np.ndarray
    item: np.ndarray
    event: np.ndarray
    session: np.ndarray
    price: np.ndarray
    sale: np.ndarray


def _draw_tastes(cat: SyntheticCatalog, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Two favourite categories (by item popularity) and a favourite brand per user.

    The first draws of a block's generator: :func:`next_view_mixture` replays them.
    """
    fav = cat.category[cat.popular(rng.random((2, m)))]
    fav_brand = cat.brand[cat.in_category(fav[0], rng.random(m))]
    return fav, fav_brand


def simulate_block(cfg: GeneratorConfig, block: int) -> Simulation:
    """Simulate the users of ``block`` (``BLOCK_USERS`` consecutive user indices).

    Vectorised over the block's users: each loop iteration is one step (one item
    viewed, perhaps carted and bought) of every user who still has events to make.
    Under a drift, a step is the drift's draw with probability ``drift_share`` whatever
    else it would have been, from random numbers drawn after the undrifted ones.
    """
    cat = build_catalog(cfg)
    quotas = user_quotas(cfg)
    users = np.arange(block * BLOCK_USERS, min((block + 1) * BLOCK_USERS, cfg.num_users))
    quota = quotas[users]
    rng = np.random.default_rng(_block_seed(cfg, block))
    m = users.size
    span = cfg.days * _DAY

    fav, fav_brand = _draw_tastes(cat, rng, m)
    sessions = np.maximum(1, np.ceil(quota / (1.15 * _MEAN_SESSION_STEPS)))
    mean_gap = span / (sessions + 1.0)
    t = cat.start + (rng.random(m) * mean_gap).astype(np.int64)
    session = np.full(m, -1, dtype=np.int64)
    steps_left = np.zeros(m, dtype=np.int64)
    prev = np.full(m, -1, dtype=np.int64)
    origin = np.full(m, -1, dtype=np.int64)  # the item whose successors the current one came from
    left = quota.copy()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "time", "item", "event", "session", "price", "sale")}

    def emit(
        rows: np.ndarray, times: np.ndarray, items: np.ndarray, event: int, prices: np.ndarray, sales: np.ndarray
    ) -> None:
        out["user"].append(rows)
        out["time"].append(times)
        out["item"].append(items)
        out["event"].append(np.full(rows.size, event, dtype=np.int8))
        out["session"].append(session[rows])
        out["price"].append(prices)
        out["sale"].append(sales)

    while True:
        idx = np.flatnonzero(left > 0)
        if idx.size == 0:
            break
        a = idx.size
        # New sessions start after a gap longer than the sessionization threshold.
        new = idx[steps_left[idx] == 0]
        if new.size:
            gap = _SESSION_GAP_MIN_S + rng.exponential(mean_gap[new]).astype(np.int64)
            t[new] += np.where(session[new] >= 0, gap, 0)
            session[new] += 1
            prev[new] = -1
            origin[new] = -1
            steps_left[new] = rng.geometric(1.0 / _MEAN_SESSION_STEPS, size=new.size)

        now = t[idx]
        p = prev[idx]
        u_src, u_pick, u_fav = rng.random((3, a))
        sale_now = cat.active_sale(now, cfg.sales_per_day)
        o = origin[idx]
        p_follow = np.where(p >= 0, cfg.follow_probability, 0.0)
        p_back = np.where((p >= 0) & (o >= 0), cfg.back_probability, 0.0)
        follow = u_src < p_follow
        back = ~follow & (u_src < p_follow + p_back)
        moved = follow | back
        # Among the rest: the running sale, a favourite category, the favourite brand,
        # or global popularity; u_src is reused, rescaled to [0, 1).
        v = np.where(moved, 0.0, (u_src - p_follow - p_back) / (1.0 - p_follow - p_back))
        sale_p = np.where(sale_now >= 0, _P_SALE, 0.0)
        to_sale = ~moved & (v < sale_p)
        to_cat = ~moved & ~to_sale & (v < sale_p + _P_CATEGORY)
        to_brand = ~moved & ~to_sale & ~to_cat & (v < sale_p + _P_CATEGORY + _P_BRAND)
        item = cat.popular(u_pick)
        k = cat.successors.shape[1]
        if follow.any():
            slot = np.searchsorted(cat.successor_cdf, u_pick[follow], side="right")
            item[follow] = cat.successors[p[follow], np.minimum(slot, k - 1)]
        if back.any():
            # Another successor of the origin page; the one already open is skipped.
            slot = np.minimum(np.searchsorted(cat.successor_cdf, u_pick[back], side="right"), k - 1)
            pick = cat.successors[o[back], slot]
            item[back] = np.where(pick == p[back], cat.successors[o[back], (slot + 1) % k], pick)
        if to_sale.any():
            col = (u_pick[to_sale] * cfg.items_per_sale).astype(np.int64)
            item[to_sale] = cat.sale_items[sale_now[to_sale], col]
        if to_cat.any():
            rows = idx[to_cat]
            which = np.where(u_fav[to_cat] < _P_FIRST_CATEGORY, fav[0, rows], fav[1, rows])
            item[to_cat] = cat.in_category(which, u_pick[to_cat])
        if to_brand.any():
            item[to_brand] = cat.of_brand(fav_brand[idx[to_brand]], u_pick[to_brand])
        drifted = None
        if cat.drift_share > 0.0:
            drifted = rng.random(a) < cat.drift_share
            item[drifted] = cat.drift_draw(rng.random(int(drifted.sum())))
            follow &= ~drifted
            back &= ~drifted
        repeat = item == p
        if drifted is not None and cat.drift_items.size > 1:
            redo = repeat & drifted  # drawn again from the drift, leaving the last item out
            if redo.any():
                item[redo] = cat.drift_other(item[redo], rng.random(int(redo.sum())))
                repeat &= ~redo
        if repeat.any():  # a shopper moves on; a second look at once would collapse anyway
            item[repeat] = cat.popular(rng.random(int(repeat.sum())))
        origin[idx] = np.where(repeat, -1, np.where(follow, p, np.where(back, o, -1)))

        on_sale = cat.on_sale(sale_now, item)
        sale_of = np.where(on_sale, sale_now, -1)
        if cat.unseen_items.size:
            sale_of = np.where(item >= cat.base_items, cat.unseen_sale, sale_of)
        price = np.where(on_sale, np.round(cat.price[item] * (1.0 - _SALE_DISCOUNT), 2), cat.price[item])
        u_cart, u_buy = rng.random((2, a))
        cart = u_cart < np.where(on_sale, _P_CART_SALE, _P_CART)
        buy = cart & (u_buy < _P_PURCHASE)
        t_cart = now + rng.integers(5, 121, size=a)
        t_buy = t_cart + rng.integers(10, 301, size=a)

        emit(idx, now, item, 0, price, sale_of)
        emit(idx[cart], t_cart[cart], item[cart], 1, price[cart], sale_of[cart])
        emit(idx[buy], t_buy[buy], item[buy], 2, price[buy], sale_of[buy])

        last = np.where(buy, t_buy, np.where(cart, t_cart, now))
        dwell = np.minimum(1 + rng.exponential(_MEAN_DWELL_S, size=a).astype(np.int64), _MAX_DWELL_S)
        t[idx] = last + dwell
        prev[idx] = item
        steps_left[idx] -= 1
        left[idx] -= 1 + cart + buy

    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    # Within a user, append order is time order; a stable sort by user keeps it.
    order = np.argsort(cols["user"], kind="stable")
    local = cols["user"][order]
    first = np.searchsorted(local, local, side="left")
    keep = order[(np.arange(local.size) - first) < quota[local]]  # trim the funnel's overshoot
    return Simulation(
        user=users[cols["user"][keep]] if keep.size else np.zeros(0, dtype=np.int64),
        time=cols["time"][keep].astype(np.int64),
        item=cols["item"][keep].astype(np.int64),
        event=cols["event"][keep].astype(np.int8),
        session=cols["session"][keep].astype(np.int64),
        price=cols["price"][keep].astype(np.float64),
        sale=cols["sale"][keep].astype(np.int64),
    )


def funnel_probabilities(on_sale: bool) -> tuple[float, float]:
    """P(add to cart | view) and P(purchase | add to cart) of the generator's shoppers."""
    return (_P_CART_SALE if on_sale else _P_CART), _P_PURCHASE


def _block_seed(cfg: GeneratorConfig, block: int) -> list[int]:
    return [cfg.seed, 0xB10C, block]


@dataclass(frozen=True, eq=False)
class NextView:
    """The generator's own next-view distribution, per user and recent items: the shoppers' truth.

    Built once per world (:meth:`build`); :meth:`probabilities` is O(num_items) per query.
    It is the mixture the simulation draws a session's next view from: successors of the
    last item (``follow_probability``), other successors of the page it came from (back
    navigation), and otherwise the running flash sale, the user's two favourite categories,
    the favourite brand, or global popularity. The shopper simulator of the online
    experiments (:mod:`sparktf.experiments.simulator`) draws its shoppers' next items from
    it, so their click probabilities are known exactly. Under a drift it is
    ``(1 - drift_share) * undrifted + drift_share * drift`` (the drift's distribution:
    :meth:`SyntheticCatalog.drift_distribution`).

    Attributes:
        catalog: the world.
        favourite: ``[2, num_users]`` each user's two favourite categories.
        favourite_brand: ``[num_users]`` each user's favourite brand.
    """

    cfg: GeneratorConfig
    catalog: SyntheticCatalog
    favourite: np.ndarray
    favourite_brand: np.ndarray
    _category_share: np.ndarray
    _brand_share: np.ndarray
    _slot_p: np.ndarray

    @classmethod
    def build(cls, cfg: GeneratorConfig) -> NextView:
        cat = build_catalog(cfg)
        fav = np.zeros((2, cfg.num_users), dtype=np.int64)
        fav_brand = np.zeros(cfg.num_users, dtype=np.int64)
        for block in range(num_blocks(cfg)):
            ids = np.arange(block * BLOCK_USERS, min((block + 1) * BLOCK_USERS, cfg.num_users))
            fav[:, ids], fav_brand[ids] = _draw_tastes(cat, np.random.default_rng(_block_seed(cfg, block)), ids.size)
        cat_total = np.bincount(cat.category, weights=cat.popularity, minlength=cfg.num_categories)
        brand_total = np.bincount(cat.brand, weights=cat.popularity, minlength=cfg.num_brands)
        return cls(
            cfg=cfg,
            catalog=cat,
            favourite=fav,
            favourite_brand=fav_brand,
            _category_share=cat.popularity / np.maximum(cat_total[cat.category], 1e-300),
            _brand_share=cat.popularity / np.maximum(brand_total[cat.brand], 1e-300),
            _slot_p=np.diff(np.concatenate([[0.0], cat.successor_cdf])),
        )

    @property
    def surge_category(self) -> int:
        """The category the ``category_surge`` drift sends its share to, or -1 without it."""
        return self.catalog.surge_category

    def taste(self, user: int, sale: int = -1) -> np.ndarray:
        """Where a shopper who follows no successor goes: the sale (when ``sale`` >= 0 runs),
        a favourite category, the favourite brand, or popularity (without the drift)."""
        cat = self.catalog
        category_p = np.where(
            cat.category == self.favourite[0, user], _P_FIRST_CATEGORY * self._category_share, 0.0
        ) + np.where(cat.category == self.favourite[1, user], (1 - _P_FIRST_CATEGORY) * self._category_share, 0.0)
        brand_p = np.where(cat.brand == self.favourite_brand[user], self._brand_share, 0.0)
        sale_p = _P_SALE if sale >= 0 else 0.0
        out: np.ndarray = (
            _P_CATEGORY * category_p + _P_BRAND * brand_p + (1 - sale_p - _P_CATEGORY - _P_BRAND) * cat.popularity
        )
        if sale >= 0:
            np.add.at(out, cat.sale_items[sale], sale_p / cat.sale_items.shape[1])
        return out

    def probabilities(
        self, user: int, history: Sequence[int], *, sale: int = -1, no_repeat: bool = False
    ) -> np.ndarray:
        """P(next view = item) for ``user`` after ``history`` (the session's items, oldest first).

        Args:
            user: the user index.
            history: the current session's item indices; empty at a session's start.
            sale: the flash sale running now, or -1.
            no_repeat: apply the simulation's rule that the last item is not viewed again at
                once (a draw of it becomes a popularity draw), so the result is exactly the
                distribution the shoppers draw from.
        """
        cat = self.catalog
        n = cat.num_items
        taste = self.taste(user, sale)
        if len(history) == 0:
            return self._drifted(taste, -1, no_repeat)
        last = int(history[-1])
        follow = np.zeros(n)
        np.add.at(follow, cat.successors[last], self._slot_p)
        p_back, back = 0.0, np.zeros(n)
        if len(history) > 1 and last in cat.successors[int(history[-2])]:
            np.add.at(back, cat.successors[int(history[-2])], self._slot_p)
            back[last] = 0.0
            if back.sum() > 0:
                p_back, back = self.cfg.back_probability, back / back.sum()
        rest = 1.0 - self.cfg.follow_probability - p_back
        out: np.ndarray = self.cfg.follow_probability * follow + p_back * back + rest * taste
        if no_repeat:
            again = out[last]
            out[last] = 0.0
            out += again * cat.popularity
        return self._drifted(out, last, no_repeat)

    def _drifted(self, undrifted: np.ndarray, last: int, no_repeat: bool) -> np.ndarray:
        share = self.catalog.drift_share
        if share == 0.0:
            return undrifted
        drift = self.catalog.drift_distribution(last, no_repeat=no_repeat)
        out: np.ndarray = (1.0 - share) * undrifted + share * drift
        return out


def next_view_mixture(cfg: GeneratorConfig, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """The generator's own next-view probabilities: a reference for any recommender.

    For each query (a user index and its item indices, oldest first), the mixture the
    simulation draws the next view from (:class:`NextView`, without a sale). It knows
    what no model sees (the tastes, the successor lists) but leaves out what needs
    the target's time (flash sales, session starts), so ranking by it shows what the
    sequential and taste structure allows; it is not a strict ceiling (a model that
    infers a running sale from the history can beat it on NDCG).

    Returns:
        ``[len(users), num_items]`` probabilities.
    """
    truth = NextView.build(cfg)
    out = np.zeros((len(users), truth.catalog.num_items))
    for row, (user, hist) in enumerate(zip(users, histories, strict=True)):
        out[row] = truth.probabilities(int(user), [int(x) for x in hist])
    return out


# --------------------------------------------------------------------------- Spark


@functools.lru_cache(maxsize=4)
def _names(cfg: GeneratorConfig) -> dict[str, pa.Array]:
    import pyarrow as pa

    cat = build_catalog(cfg)
    sales = [f"sale_{d:04d}_{s}" for d in range(cfg.days) for s in range(cfg.sales_per_day)]
    if cat.unseen_items.size:
        sales.append("sale_unseen")  # index cat.unseen_sale
    return {
        "item": pa.array([f"i{i}" for i in range(cat.num_items)], pa.string()),
        "category": pa.array([category_name(i) for i in range(cfg.num_categories)], pa.string()),
        "brand": pa.array([f"brand_{i:04d}" for i in range(cfg.num_brands)], pa.string()),
        "sale": pa.array(sales, pa.string()),
        "event": pa.array(list(EVENT_TYPES), pa.string()),
    }


def _to_arrow(cfg: GeneratorConfig, sim: Simulation, tz: str) -> pa.RecordBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    cat = build_catalog(cfg)
    names = _names(cfg)
    first = int(sim.user.min()) if sim.user.size else 0
    user_names = pa.array([f"u{u}" for u in range(first, int(sim.user.max()) + 1 if sim.user.size else 0)])
    user_id = user_names.take(pa.array(sim.user - first))
    if cfg.session_ids:
        session_id = pc.binary_join_element_wise(user_id, pc.cast(pa.array(sim.session), pa.string()), "-s")
    else:
        session_id = pa.nulls(sim.user.size, pa.string())
    return pa.RecordBatch.from_arrays(
        [
            pa.array(sim.time * 1_000_000, pa.timestamp("us", tz=tz)),
            user_id,
            names["item"].take(pa.array(sim.item)),
            names["event"].take(pa.array(sim.event)),
            session_id,
            names["category"].take(pa.array(cat.category[sim.item])),
            names["brand"].take(pa.array(cat.brand[sim.item])),
            pa.array(sim.price, pa.float64()),
            names["sale"].take(pa.array(sim.sale, mask=sim.sale < 0)),
        ],
        names=["event_time", "user_id", "item_id", "event_type", "session_id", "category", "brand", "price", "sale_id"],
    )


def _generate_partition(cfg: GeneratorConfig, tz: str, batches: Iterator[Any]) -> Iterator[Any]:
    for batch in batches:
        for block in batch.column(0).to_numpy():
            rb = _to_arrow(cfg, simulate_block(cfg, int(block)), tz)
            for offset in range(0, rb.num_rows, _BATCH_ROWS):
                yield rb.slice(offset, _BATCH_ROWS)


def generate_events(spark: SparkSession, cfg: GeneratorConfig, *, num_partitions: int | None = None) -> DataFrame:
    """The events of ``cfg`` as a Spark DataFrame with the raw event schema.

    Args:
        spark: the session.
        cfg: the ``[generator]`` section.
        num_partitions: Spark partitions to spread the user blocks over; by default
            about one per million events, at least the default parallelism. It does
            not change the result.

    Returns:
        A lazy DataFrame; nothing runs until it is written or counted.
    """
    blocks = num_blocks(cfg)
    if num_partitions is None:
        num_partitions = max(spark.sparkContext.defaultParallelism, math.ceil(cfg.num_events / 1_000_000))
    num_partitions = max(1, min(num_partitions, blocks))
    tz = spark.conf.get("spark.sql.session.timeZone") or "UTC"
    fn = functools.partial(_generate_partition, cfg, tz)
    return spark.range(0, blocks, 1, num_partitions).mapInArrow(fn, EVENTS_DDL)
