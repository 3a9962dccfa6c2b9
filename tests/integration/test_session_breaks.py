"""``features.session_breaks``: the examples' histories (Spark SQL) and the stream's live
histories (Python) put the session breaks in the same places, by the one rule of
:func:`sparktf.data.schema.history_with_breaks`."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import Any

import pytest

from sparktf.data.schema import SESSION_BREAK, history_with_breaks
from sparktf.online.events import EventRules
from sparktf.online.stream import UserRules, apply_user

T0 = 1_780_000_000.0
GAP_S = 1800.0
TYPES = ("view", "add_to_cart", "purchase")


def _events(seed: int, users: int = 12) -> list[dict[str, Any]]:
    """Distinct items per user (the features stage collapses consecutive repeats, the live
    history does not), some with their own session ids, some cut by time gaps."""
    rng = random.Random(seed)
    out = []
    for u in range(users):
        t = T0
        own = rng.random() < 0.5
        order = 0
        for k in range(rng.randint(1, 25)):
            jump = rng.random()
            t += rng.uniform(2 * GAP_S, 5 * GAP_S) if jump < 0.25 else rng.uniform(1, 600)
            if jump < 0.25:
                order += 1
            out.append(
                {
                    "event_id": f"u{u}-e{k}",
                    "user_id": f"u{u}",
                    "item_id": f"i{u}-{k}",
                    "event_type": rng.choice(TYPES),
                    "t": round(t, 3),
                    "session_id": f"u{u}-order{order}" if own else None,
                }
            )
    return out


@pytest.mark.parametrize("max_history", [1, 3, 8])
def test_live_histories_put_the_breaks_where_the_features_stage_does(spark: Any, max_history: int) -> None:
    from pyspark.sql import functions as F

    from sparktf.config import FeatureConfig
    from sparktf.data.features import _with_rank, steps, with_history

    positive = ("view", "purchase")
    events = _events(max_history)
    # The features stage: each user's history before a step after all of them (a sentinel).
    rows = [
        (e["user_id"], e["item_id"], dt.datetime.fromtimestamp(e["t"], dt.UTC), e["event_type"], e["session_id"])
        for e in events
    ]
    last = {e["user_id"]: e["t"] for e in events}
    rows += [(u, "sentinel", dt.datetime.fromtimestamp(t + 1, dt.UTC), "view", None) for u, t in last.items()]
    df = spark.createDataFrame(
        rows, "user_id string, item_id string, event_time timestamp, event_type string, session_id string"
    )
    cfg = FeatureConfig(session_gap_minutes=int(GAP_S // 60), max_history=max_history, positive_event_types=positive)
    hist = with_history(steps(_with_rank(df, TYPES), cfg, TYPES), max_history, session_breaks=True)
    offline = {r["user_id"]: list(r["history"]) for r in hist.where(F.col("item_id") == "sentinel").collect()}

    rules = UserRules(
        events=EventRules(
            event_types=TYPES, min_event_time="1995-01-01", max_event_time="2100-01-01", max_future_s=60.0
        ),
        max_history=max_history,
        positive_event_types=positive,
        session_gap_s=GAP_S,
        watermark_s=300.0,
        session_breaks=True,
    )
    rng = random.Random(7)
    live: dict[str, list[str]] = {}
    breaks = 0
    for user in sorted(last):
        mine = [e for e in events if e["user_id"] == user]
        saved, state = None, None
        # In batches of 1-4 events, as a stream would bring them.
        while mine:
            size = rng.randint(1, 4)
            batch, mine = mine[:size], mine[size:]
            recs = [
                {
                    "event_id": e["event_id"],
                    "event_time": repr(e["t"]),
                    "user_id": user,
                    "item_id": e["item_id"],
                    "event_type": e["event_type"],
                    "ack_time": repr(e["t"] + 0.5),
                    **({"session_id": e["session_id"]} if e["session_id"] else {}),
                }
                for e in batch
            ]
            out = apply_user(user, saved, recs, rules)
            assert not out.quarantine, out.quarantine
            saved, state = out.saved or saved, out.state or state
        assert state is not None
        live[user] = list(state["items"])
        breaks += live[user].count(SESSION_BREAK)
    # Users whose events are all of non-positive types have no history on either side.
    assert {u: h for u, h in live.items() if h} == {u: h for u, h in offline.items() if h}
    if max_history > 1:
        assert breaks > 0  # the case is exercised


def test_the_rule_cuts_breaks_counted_and_never_leads_or_trails() -> None:
    items, sessions = ["a", "b", "c", "d"], [1, 1, 2, 3]
    assert history_with_breaks(items, sessions, 10) == ["a", "b", SESSION_BREAK, "c", SESSION_BREAK, "d"]
    assert history_with_breaks(items, sessions, 3) == ["c", SESSION_BREAK, "d"]
    assert history_with_breaks(items, sessions, 4) == ["c", SESSION_BREAK, "d"]  # no leading break
    assert history_with_breaks(items, sessions, 0) == []
    assert history_with_breaks(["a"], [1], 5) == ["a"]


@pytest.mark.parametrize(("session_breaks", "max_history"), [(False, 4), (True, 3), (True, 5), (True, 12)])
def test_window_end_rows_label_every_train_transition(spark: Any, session_breaks: bool, max_history: int) -> None:
    """SASRec trains on the ``window_end`` rows only: their histories and targets must hold
    every train transition of every user, with session breaks taking history slots too."""
    from sparktf.config import FeatureConfig
    from sparktf.data.features import _with_rank, _with_window_end, label_steps, steps, with_history

    events = _events(max_history + 100, users=20)
    rows = [
        (e["user_id"], e["item_id"], dt.datetime.fromtimestamp(e["t"], dt.UTC), "view", e["session_id"]) for e in events
    ]
    df = spark.createDataFrame(
        rows, "user_id string, item_id string, event_time timestamp, event_type string, session_id string"
    )
    cfg = FeatureConfig(
        session_gap_minutes=int(GAP_S // 60),
        max_history=max_history,
        positive_event_types=("view",),
        session_breaks=session_breaks,
    )
    labelled = label_steps(steps(_with_rank(df, TYPES), cfg, TYPES), cfg)
    ex = with_history(_with_window_end(labelled, cfg), max_history, session_breaks=session_breaks)
    got = (
        ex.where("split = 'train' AND pos >= 2").select("user_id", "pos", "item_id", "history", "window_end").collect()
    )
    want: dict[str, set[tuple[str, str]]] = {}
    by_user: dict[str, list[Any]] = {}
    for r in got:
        by_user.setdefault(r["user_id"], []).append(r)
    covered: dict[str, set[tuple[str, str]]] = {}
    windows = 0
    for user, rs in by_user.items():
        rs.sort(key=lambda r: r["pos"])
        first = rs[0]["history"][-1]  # pos 2's history is step 1
        items = [first, *[r["item_id"] for r in rs]]
        want[user] = set(itertools.pairwise(items))
        covered[user] = set()
        for r in rs:
            if not r["window_end"]:
                continue
            windows += 1
            seq = [*r["history"], r["item_id"]]
            # The label of each entry is the next entry; a break's is the item after it.
            for a, b, c in zip(seq, seq[1:], [*seq[2:], None], strict=False):
                if a != SESSION_BREAK and b != SESSION_BREAK:
                    covered[user].add((a, b))
                elif a != SESSION_BREAK and b == SESSION_BREAK and c is not None:
                    covered[user].add((a, c))
    assert want and all(want[u] <= covered[u] for u in want), {u: want[u] - covered[u] for u in want}
    assert windows < len(got)  # windows, not every row
