"""Shoppers whose true preferences are known, driving a running server (``sparktf simulate``).

Each simulated session is one of the synthetic generator's own users (drawn by their
activity, :func:`~sparktf.data.generator.user_quotas`), in its world: the same catalogue,
tastes, successor structure and flash sales (:class:`~sparktf.data.generator.NextView`).
At each step the shopper

1. draws the item they want next from the generator's next-view distribution given the
   session so far and the running sale (the truth, ``p``),
2. asks ``:recommend`` for ``k`` items (``user_id`` and ``session_id``; no history: the
   server takes the live history the stream keeps, as a shop page would),
3. examines rank ``r`` with probability ``θ_r = 1 / r ** position_bias`` (position-based
   click model) and clicks the wanted item if it is shown at an examined rank; otherwise
   browses to it organically. So ``P(click at r) = θ_r · p(item at r)``, and a reply's
   expected clicks ``Σ_r θ_r p(a_r)`` are known exactly: the report's CTR of an arm is
   checked against ``Σ expected clicks / Σ impressions`` of that arm's replies,
4. views the item, and may add it to the cart and buy it with the generator's funnel
   probabilities; every event is posted back to ``POST /v1/events`` (a click, and what
   follows it, carries the reply's ``request_id`` and the position),
5. stays on the page ``dwell_s`` seconds on average (exponential) before the next step,
   the time in which the stream brings the shopper's live history up to date.

Random draws do not depend on the replies (each session has its own generator seeded by
``(seed, session number)``, and every step draws the same numbers whatever was shown), so
one seed gives the same shoppers and intentions against any server. The truth assumes
what a shopper wants is drawn independently of what is shown; a replay of a seed against
a server that remembers the earlier run breaks that: the replayed shoppers' items are in
their live histories, so ``exclude_seen`` leaves out exactly the items they are about to
want (measured: CTR 0.003 against a truth of 0.008). ``sparktf simulate`` therefore takes
a fresh seed unless one is given. The run is bounded
by ``duration_s`` and paced at ``rate`` requests a second over ``concurrency`` threads.

World time: a real second is a minute of the generator's calendar, starting at a
seeded day, so a run of minutes passes through flash sales.

Drift (``generator.drift``): the shoppers live in the drifted world, so a run shows the
server traffic that the model was not trained on. Under ``unseen_items`` a shopper who
wants one of the new items (indices from the catalogue's ``num_items`` on,
:func:`~sparktf.data.generator.unseen_items`) views it and the view is posted with its id
(``item_name``), so the server's live histories hold items the model does not know.

Why our own code: RecSim (NG) and Virtual-Taobao model users with their own latent
structure; the point here is to reuse the generator's exact world so the truth is the
one that generated the training data.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sparktf.config import GeneratorConfig
from sparktf.data.generator import NextView, funnel_probabilities, user_quotas
from sparktf.experiments.assignment import CLICK

__all__ = [
    "ArmTally",
    "HttpShop",
    "LocalShop",
    "PolicyShop",
    "Scorer",
    "Shop",
    "ShopperSimulator",
    "SimulationResult",
    "examination",
    "item_index",
    "item_name",
    "user_name",
]

#: World seconds per real second of a run.
WORLD_SPEED = 60.0
_DAY = 86_400


def item_name(i: int) -> str:
    """The generator's item id of item index ``i`` (``i<index>``)."""
    return f"i{i}"


def user_name(u: int) -> str:
    """The generator's user id of user index ``u`` (``u<index>``)."""
    return f"u{u}"


def item_index(item_id: str) -> int | None:
    """The item index of a generator item id, or None for any other id."""
    if item_id.startswith("i") and item_id[1:].isdigit():
        return int(item_id[1:])
    return None


def examination(k: int, position_bias: float) -> np.ndarray:
    """``θ_r = 1 / r ** position_bias`` for ranks 1..k."""
    return 1.0 / np.arange(1, k + 1, dtype=np.float64) ** position_bias


class Shop(Protocol):
    """How shoppers reach the server: one per thread."""

    def recommend(self, user_id: str, session_id: str, k: int) -> dict[str, Any]: ...

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class HttpShop:
    """A :class:`Shop` over HTTP (one keep-alive connection).

    Args:
        base_url: ``http://host:port``.
        model_name: the served model's name in ``/v1/models/{name}:recommend``.
        token: the bearer token (``serve.auth_token``), or "".
        timeout_s: per request.
    """

    def __init__(self, base_url: str, model_name: str, token: str = "", timeout_s: float = 10.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)
        self._path = f"/v1/models/{model_name}:recommend"

    def recommend(self, user_id: str, session_id: str, k: int) -> dict[str, Any]:
        r = self._client.post(self._path, json={"user_id": user_id, "session_id": session_id, "k": k})
        if r.status_code != 200:
            raise ShopError(f":recommend answered {r.status_code}: {r.text[:200]}")
        reply: dict[str, Any] = r.json()
        return reply

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        r = self._client.post("/v1/events", json={"events": events})
        if r.status_code != 200:
            raise ShopError(f"POST /v1/events answered {r.status_code}: {r.text[:200]}")
        reply: dict[str, Any] = r.json()
        return reply

    def close(self) -> None:
        self._client.close()


class ShopError(Exception):
    """The server refused or failed a simulator's request."""


@dataclass
class ArmTally:
    """What one arm's replies got from the simulated shoppers.

    Attributes:
        requests: replies of the arm.
        impressions: items shown.
        clicks: clicks on shown items.
        expected_clicks: Σ over replies of Σ_r θ_r p(item at r): the truth the clicks estimate.
        carts, purchases: add-to-carts and purchases that followed a click.
        users: the users the arm answered.
        target_impressions, target_expected_clicks: when the shop also says what a candidate
            policy would have shown in the same context (``target_items`` in the reply, see
            :class:`PolicyShop`), its items and its expected clicks there: the truth an
            off-policy estimate from this arm's log estimates.
    """

    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    expected_clicks: float = 0.0
    carts: int = 0
    purchases: int = 0
    users: set[str] = field(default_factory=set)
    target_impressions: int = 0
    target_expected_clicks: float = 0.0

    @property
    def true_ctr(self) -> float:
        """The arm's true CTR over the replies it gave: expected clicks per impression."""
        return self.expected_clicks / self.impressions if self.impressions else float("nan")

    @property
    def target_true_ctr(self) -> float:
        """The candidate's true CTR in this arm's contexts (NaN without ``target_items``)."""
        return self.target_expected_clicks / self.target_impressions if self.target_impressions else float("nan")


@dataclass
class SimulationResult:
    """What a run sent and what came back (``sparktf simulate`` prints and saves it)."""

    seed: int
    duration_s: float
    sessions: int = 0
    requests: int = 0
    failed_requests: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    failed_posts: int = 0
    arms: dict[str, ArmTally] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events_sent / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": round(self.duration_s, 3),
            "sessions": self.sessions,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "requests_per_s": round(self.requests_per_s, 2),
            "events_sent": self.events_sent,
            "events_accepted": self.events_accepted,
            "events_rejected": self.events_rejected,
            "failed_posts": self.failed_posts,
            "events_per_s": round(self.events_per_s, 2),
            "arms": {
                name: {
                    "requests": t.requests,
                    "users": len(t.users),
                    "impressions": t.impressions,
                    "clicks": t.clicks,
                    "expected_clicks": round(t.expected_clicks, 6),
                    "true_ctr": t.true_ctr,
                    "carts": t.carts,
                    "purchases": t.purchases,
                }
                for name, t in sorted(self.arms.items())
            },
            "errors": self.errors[:20],
        }


class _Pacer:
    """Spaces requests ``1 / rate`` apart across threads."""

    def __init__(self, rate: float) -> None:
        self._gap = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, deadline: float) -> bool:
        with self._lock:
            slot = max(self._next, time.monotonic())
            self._next = slot + self._gap
        if slot >= deadline:
            return False
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return True


class ShopperSimulator:
    """Simulated shopping sessions against a :class:`Shop`.

    Args:
        generator: the ``[generator]`` world the shoppers come from.
        seed: the run's randomness.
        k: items per request.
        position_bias: ``θ_r = 1 / r ** position_bias``.
        steps_per_session: the mean pages of a session (geometric).
        dwell_s: the mean seconds between a shopper's pages (exponential; 0: none).
        users: draw shoppers from the first this many users (0: all).
        clock: epoch seconds now (event times).
    """

    def __init__(
        self,
        generator: GeneratorConfig,
        *,
        seed: int,
        k: int,
        position_bias: float,
        steps_per_session: float,
        dwell_s: float = 0.0,
        users: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.truth = NextView.build(generator)
        self.seed = seed
        self.k = k
        self.theta = examination(k, position_bias)
        self.steps_per_session = steps_per_session
        self.dwell_s = dwell_s
        self._sleep = sleep
        quota = user_quotas(generator).astype(np.float64)
        if users:
            quota = quota[:users]
        if quota.sum() <= 0:
            raise ValueError("the generator's world has no active user among the simulated ones")
        self._user_cdf = np.cumsum(quota / quota.sum())
        self._user_cdf[-1] = 1.0
        self.clock = clock
        cat = self.truth.catalog
        span = max(generator.days, 1) * _DAY
        self._world_start = cat.start + int(np.random.default_rng([seed, 0x5A1E]).integers(0, span))
        self._span = span
        self._sales_per_day = generator.sales_per_day
        self._t0 = clock()

    # ------------------------------------------------------------------ one session

    def session(self, shop: Shop, index: int, result: SimulationResult, lock: threading.Lock, pace: Any) -> None:
        """Run session number ``index`` (its draws seeded by ``(seed, index)``) until it ends
        or ``pace`` says the run is over."""
        rng = np.random.default_rng([self.seed, 0x5E55, index])
        user = int(np.searchsorted(self._user_cdf, rng.random(), side="right"))
        user = min(user, self._user_cdf.size - 1)
        uid, sid = user_name(user), f"sim-{self.seed}-{index}"
        steps = int(rng.geometric(1.0 / self.steps_per_session))
        cat = self.truth.catalog
        items: list[int] = []
        for step in range(steps):
            u_item, u_exam, u_cart, u_buy, u_dwell = rng.random(5)
            if step and self.dwell_s > 0:  # on the previous page a while (the stream catches up)
                self._sleep(-self.dwell_s * math.log1p(-u_dwell))
            if not pace():
                return
            sale = self._sale_now()
            p = self.truth.probabilities(user, items, sale=sale, no_repeat=True)
            cdf = np.cumsum(p)
            wanted = int(min(np.searchsorted(cdf, u_item * cdf[-1], side="right"), cat.num_items - 1))
            try:
                reply = shop.recommend(uid, sid, self.k)
                error = None
            except Exception as exc:  # noqa: BLE001 - a failed request is counted; the shopper browses on
                reply, error = None, f"{type(exc).__name__}: {exc}"
            now = self.clock()
            events: list[dict[str, Any]] = []
            clicked: tuple[str, int] | None = None
            with lock:
                result.requests += 1
                if reply is None:
                    result.failed_requests += 1
                    if error and len(result.errors) < 100:
                        result.errors.append(error)
            if reply is not None:
                shown = [item_index(str(x["item_id"])) for x in reply.get("items", [])]
                ranks = {i: r for r, i in enumerate(shown) if i is not None}
                expected = float(sum(self.theta[r] * p[i] for i, r in ranks.items() if r < self.k))
                target = [item_index(str(x)) for x in reply.get("target_items") or ()][: self.k]
                target_expected = float(sum(self.theta[r] * p[i] for r, i in enumerate(target) if i is not None))
                arm = str(reply.get("arm") or "(none)")
                if wanted in ranks and ranks[wanted] < self.k and u_exam < self.theta[ranks[wanted]]:
                    clicked = (str(reply["request_id"]), ranks[wanted] + 1)
                with lock:
                    tally = result.arms.setdefault(arm, ArmTally())
                    tally.requests += 1
                    tally.impressions += len(shown)
                    tally.expected_clicks += expected
                    tally.target_impressions += len(target)
                    tally.target_expected_clicks += target_expected
                    tally.users.add(uid)
                    tally.clicks += clicked is not None
            base = {"user_id": uid, "item_id": item_name(wanted), "session_id": sid}
            link = {"request_id": clicked[0], "position": clicked[1]} if clicked else {}
            if clicked:
                events.append({**base, **link, "event_type": CLICK, "event_time": now})
            events.append({**base, **link, "event_type": "view", "event_time": now + 0.001})
            # (the unseen_items drift's items are on sale whatever the time)
            p_cart, p_buy = funnel_probabilities(bool(cat.on_sale(np.array([sale]), np.array([wanted]))[0]))
            carted = u_cart < p_cart
            bought = carted and u_buy < p_buy
            if carted:
                events.append({**base, **link, "event_type": "add_to_cart", "event_time": now + 0.002})
            if bought:
                events.append({**base, **link, "event_type": "purchase", "event_time": now + 0.003})
            if clicked and reply is not None:
                with lock:
                    tally = result.arms[str(reply.get("arm") or "(none)")]
                    tally.carts += carted
                    tally.purchases += bought
            try:
                ack = shop.post_events(events)
                with lock:
                    result.events_sent += len(events)
                    result.events_accepted += int(ack.get("accepted", 0))
                    result.events_rejected += len(ack.get("rejected", []))
                    for bad in ack.get("rejected", [])[:3]:
                        if len(result.errors) < 100:
                            result.errors.append(f"event rejected: {bad.get('reason')}: {bad.get('detail')}")
            except Exception as exc:  # noqa: BLE001 - counted, reported
                with lock:
                    result.events_sent += len(events)
                    result.failed_posts += 1
                    if len(result.errors) < 100:
                        result.errors.append(f"{type(exc).__name__}: {exc}")
            items.append(wanted)

    def _sale_now(self) -> int:
        world = self._world_start + int((self.clock() - self._t0) * WORLD_SPEED) % self._span
        return int(self.truth.catalog.active_sale(np.array([world]), self._sales_per_day)[0])

    # ------------------------------------------------------------------ a run

    def run(
        self,
        shops: Callable[[], Shop],
        *,
        duration_s: float,
        rate: float,
        concurrency: int,
        max_sessions: int = 0,
        progress: Callable[[SimulationResult], None] | None = None,
    ) -> SimulationResult:
        """Run sessions on ``concurrency`` threads for ``duration_s`` seconds at most, at
        ``rate`` requests a second at most (``max_sessions`` > 0: stop after that many sessions)."""
        result = SimulationResult(seed=self.seed, duration_s=0.0)
        lock = threading.Lock()
        pacer = _Pacer(rate)
        start = time.monotonic()
        deadline = start + duration_s
        counter = iter(range(max_sessions if max_sessions > 0 else 1 << 62))
        counter_lock = threading.Lock()

        def pace() -> bool:
            return pacer.wait(deadline)

        def worker() -> None:
            shop = shops()
            try:
                while time.monotonic() < deadline:
                    with counter_lock:
                        index = next(counter, None)
                    if index is None:
                        return
                    self.session(shop, index, result, lock, pace)
                    with lock:
                        result.sessions += 1
            finally:
                shop.close()

        threads = [threading.Thread(target=worker, name=f"shopper-{i}", daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=1.0)
            if progress is not None:
                result.duration_s = time.monotonic() - start
                progress(result)
        result.duration_s = time.monotonic() - start
        return result


def true_ctr(result: SimulationResult) -> Mapping[str, float]:
    """Each arm's true CTR (expected clicks per impression) over the run's replies."""
    return {arm: t.true_ctr for arm, t in result.arms.items()}


def ranked_by(scores: Sequence[float]) -> list[int]:
    """Indices by descending score (helper for in-process policies)."""
    return [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")]


class LocalShop:
    """A :class:`Shop` in this process: an experiment's assignment and a ranking per arm,
    recording what the shoppers did per arm and user. For statistics checked over many
    seeded repeats (A/A coverage, sample-ratio tests) where a real server per repeat would
    take hours; the closed loop over HTTP is :class:`HttpShop`'s.

    Args:
        assign: unit -> arm name (a broken one can be passed to test the sample-ratio test).
        rankings: arm -> items in the order that arm shows them (a fixed list per arm).
    """

    def __init__(self, assign: Callable[[str], str], rankings: Mapping[str, Sequence[str]]) -> None:
        self.assign = assign
        self.rankings = rankings
        self._lock = threading.Lock()
        self._served: dict[str, tuple[str, str]] = {}
        #: arm -> user -> [clicks, impressions]
        self.per_user: dict[str, dict[str, list[int]]] = {}
        self._n = 0

    def recommend(self, user_id: str, session_id: str, k: int) -> dict[str, Any]:
        arm = self.assign(user_id)
        with self._lock:
            self._n += 1
            request_id = f"r{self._n}"
            self._served[request_id] = (arm, user_id)
            self.per_user.setdefault(arm, {}).setdefault(user_id, [0, 0])[1] += k
        items = [{"item_id": x} for x in self.rankings[arm][:k]]
        return {"request_id": request_id, "arm": arm, "items": items}

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            for e in events:
                if e["event_type"] == CLICK:
                    arm, user = self._served[e["request_id"]]
                    self.per_user[arm][user][0] += 1
        return {"accepted": len(events), "rejected": []}

    def close(self) -> None:
        pass

    def user_counts(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """Per user of ``arm``: clicks, impressions."""
        rows = list(self.per_user.get(arm, {}).values())
        if not rows:
            return np.zeros(0), np.zeros(0)
        a = np.asarray(rows, dtype=np.float64)
        return a[:, 0], a[:, 1]


#: A policy of :class:`PolicyShop`: (user id, history oldest first) -> all items' scores, by item index.
Scorer = Callable[[str, Sequence[str]], np.ndarray]


class PolicyShop:
    """A :class:`Shop` in this process whose arms rank by score and explore as the server's
    arms do (:func:`sparktf.serving.experiment.explore_reply`'s policy, the same
    :func:`sparktf.experiments.exploration.choose`), logging every shown slot with its
    propensity; and, for a candidate policy, what it would have shown in the same context
    (``target_items`` in the reply, so the simulator adds the candidate's true expected
    clicks there: :attr:`ArmTally.target_true_ctr`).

    For off-policy estimates checked against the truth over many seeded repeats; the same
    loop over HTTP and Spark is ``sparktf experiment estimate``'s.

    Args:
        assign: unit -> arm name.
        scorers: arm -> scorer (higher is better).
        explorations: arm -> its exploration (absent: none).
        target: the candidate's scorer, or None.
        history: how many of a user's latest viewed items are the context (and excluded).
        seed: the exploration's randomness.
    """

    def __init__(
        self,
        assign: Callable[[str], str],
        scorers: Mapping[str, Scorer],
        explorations: Mapping[str, Any] | None = None,
        target: Scorer | None = None,
        *,
        history: int = 20,
        seed: int = 0,
    ) -> None:
        self.assign = assign
        self.scorers = scorers
        self.explorations = dict(explorations or {})
        self.target = target
        self.history = history
        self._rng = np.random.default_rng([seed, 0x0FF])
        self._lock = threading.Lock()
        self._n = 0
        self._seen: dict[str, list[str]] = {}
        #: One entry per shown slot: request_id, user_id, arm, position (1-based), item_id,
        #: propensity, target_item ("" where the candidate shows nothing there).
        self.slots: list[tuple[str, str, str, int, str, float, str]] = []
        #: (request_id, position) of every click.
        self.clicked: set[tuple[str, int]] = set()
        #: The candidate's shown items, and how many of them the logging arm could have shown
        #: (were among its candidates): where it could not, no estimator sees them (support).
        self.target_slots = 0
        self.target_supported = 0

    def _top(self, scores: np.ndarray, excluded: set[int], n: int) -> list[int]:
        order = np.argsort(-scores, kind="stable")
        return [int(i) for i in order[: n + len(excluded)] if int(i) not in excluded][:n]

    def recommend(self, user_id: str, session_id: str, k: int) -> dict[str, Any]:
        from sparktf.experiments.exploration import Exploration, choose

        arm = self.assign(user_id)
        with self._lock:
            self._n += 1
            request_id = f"r{self._n}"
            context = list(self._seen.get(user_id, [])[-self.history :])
            seed = int(self._rng.integers(1 << 62))
        excluded = {i for i in (item_index(x) for x in context) if i is not None}
        policy = self.explorations.get(arm) or Exploration()
        scores = self.scorers[arm](user_id, context)
        ranked = self._top(scores, excluded, max(k, policy.pool))
        slate = choose(policy, [float(scores[i]) for i in ranked], k, np.random.default_rng(seed))
        shown = [ranked[i] for i in slate.indices]
        target: list[int] = []
        if self.target is not None:
            target = self._top(self.target(user_id, context), excluded, k)
        pool = set(ranked) if policy.explores else set(ranked[:k])
        with self._lock:
            self.target_slots += len(target)
            self.target_supported += sum(i in pool for i in target)
            for pos, (item, p) in enumerate(zip(shown, slate.propensities, strict=True)):
                cand = item_name(target[pos]) if pos < len(target) else ""
                self.slots.append((request_id, user_id, arm, pos + 1, item_name(item), float(p), cand))
        return {
            "request_id": request_id,
            "arm": arm,
            "items": [{"item_id": item_name(i)} for i in shown],
            "target_items": [item_name(i) for i in target] if self.target is not None else None,
        }

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            for e in events:
                if e["event_type"] == CLICK:
                    self.clicked.add((str(e["request_id"]), int(e["position"])))
                elif e["event_type"] == "view":
                    self._seen.setdefault(str(e["user_id"]), []).append(str(e["item_id"]))
        return {"accepted": len(events), "rejected": []}

    def close(self) -> None:
        pass

    def log(self, arm: str | None = None) -> dict[str, np.ndarray]:
        """The logged slots (of ``arm``, or all) as arrays, with ``reward`` from the clicks."""
        rows = [r for r in self.slots if arm is None or r[2] == arm]
        cols = list(zip(*rows, strict=True)) if rows else [()] * 7
        names = ("request_id", "user_id", "arm", "position", "item_id", "propensity", "target_item")
        out = {n: np.asarray(c, dtype=object) for n, c in zip(names, cols, strict=True)}
        out["position"] = out["position"].astype(np.int64)
        out["propensity"] = out["propensity"].astype(np.float64)
        out["reward"] = np.asarray([1.0 if (r[0], r[3]) in self.clicked else 0.0 for r in rows], dtype=np.float64)
        return out
