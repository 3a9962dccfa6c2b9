"""The streaming job's per-user step (:func:`sparktf.online.stream.apply_user`), without Spark.

It is what makes a replayed micro-batch harmless (a pure function of the saved state and
the batch), so these tests check the properties the stream's exactly-once argument rests
on: replay gives the same output, any split of the same events into batches gives the same
state, and every record ends accepted or quarantined with a reason.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.online.events import EventRules
from sparktf.online.stream import UserRules, apply_user

T0 = 1_780_000_000.0  # 2026-05-28
RULES = UserRules(
    events=EventRules(
        event_types=("view", "add_to_cart", "purchase"),
        min_event_time="1995-01-01",
        max_event_time="2100-01-01",
        max_future_s=60.0,
    ),
    max_history=3,
    positive_event_types=("view", "purchase"),
    session_gap_s=1800.0,
    watermark_s=300.0,
    session_breaks=False,
)


def rec(i: int, t: float, item: str = "", event_type: str = "view", **extra: Any) -> dict[str, Any]:
    """A landing record as Spark reads it: every value text."""
    r = {
        "event_id": f"e{i}",
        "event_time": repr(t),
        "user_id": "u1",
        "item_id": item or f"i{i}",
        "event_type": event_type,
        "ack_time": repr(t + 0.5),
    }
    r.update({k: v for k, v in extra.items()})
    return r


def test_events_are_ordered_by_event_time_within_the_watermark() -> None:
    first = apply_user("u1", None, [rec(1, T0 + 10), rec(2, T0 + 30)], RULES)
    assert first.state is not None and first.state["items"] == ["i1", "i2"]
    # i3 happened between them and arrives after: it is put in its place.
    second = apply_user("u1", first.saved, [rec(3, T0 + 20)], RULES)
    assert second.state is not None and second.state["items"] == ["i1", "i3", "i2"]
    assert second.state["events"] == 3 and second.state["last_event_time"] == T0 + 30


def test_an_event_behind_the_watermark_is_quarantined_as_late() -> None:
    first = apply_user("u1", None, [rec(1, T0 + 1000)], RULES)
    out = apply_user("u1", first.saved, [rec(2, T0 + 1000 - 301), rec(3, T0 + 1000 - 299)], RULES)
    assert [q[2] for q in out.quarantine] == ["late_event"]
    assert "stream.watermark_s = 300" in out.quarantine[0][3]
    assert out.state is not None and out.state["items"] == ["i3", "i1"]


def test_a_repeated_event_id_is_a_duplicate_in_the_same_or_a_later_batch() -> None:
    first = apply_user("u1", None, [rec(1, T0), rec(1, T0)], RULES)
    assert [q[2] for q in first.quarantine] == ["duplicate"]
    again = apply_user("u1", first.saved, [rec(1, T0)], RULES)
    assert [q[2] for q in again.quarantine] == ["duplicate"]
    assert again.state is None and again.saved is None  # nothing changed, nothing to write


def test_the_history_is_the_last_max_history_positive_items() -> None:
    events = [rec(i, T0 + i, event_type="add_to_cart" if i % 2 else "view") for i in range(10)]
    out = apply_user("u1", None, events, RULES)
    assert out.state is not None and out.state["items"] == ["i4", "i6", "i8"]


def test_sessions_split_on_the_gap_or_follow_the_events_own_ids() -> None:
    out = apply_user("u1", None, [rec(1, T0), rec(2, T0 + 100), rec(3, T0 + 100 + 1801)], RULES)
    assert out.state is not None
    assert out.state["session_id"] == f"u1:live-{int(T0 + 1901)}"
    assert out.state["session_start"] == T0 + 1901
    more = apply_user("u1", out.saved, [rec(4, T0 + 2000)], RULES)
    assert more.state is not None and more.state["session_id"] == out.state["session_id"]
    own = apply_user("u1", more.saved, [rec(5, T0 + 2100, session_id="s-9")], RULES)
    assert own.state is not None and own.state["session_id"] == "s-9"
    assert own.state["session_start"] == T0 + 2100


def test_bad_records_are_quarantined_with_the_rule_that_failed() -> None:
    out = apply_user(
        None,
        None,
        [
            {"_corrupt_record": "{not json"},
            {"event_id": "x", "ack_time": repr(T0), "event_time": repr(T0), "item_id": "i", "event_type": "view"},
        ],
        RULES,
    )
    assert [q[2] for q in out.quarantine] == ["malformed_record", "missing_key"]
    bad = apply_user(
        "u1",
        None,
        [
            rec(1, T0, event_type="click"),
            rec(2, T0 + 3600),  # acknowledged at T0 + 3600.5: fine
            {**rec(3, T0 + 3600), "ack_time": repr(T0)},  # dated an hour after its acknowledgement
            {k: v for k, v in rec(4, T0).items() if k != "event_id"},
        ],
        RULES,
    )
    assert sorted(q[2] for q in bad.quarantine) == ["bad_field", "future_dated", "unknown_event_type"]
    assert bad.state is not None and bad.state["events"] == 1


def test_a_replayed_batch_gives_the_same_output() -> None:
    first = apply_user("u1", None, [rec(i, T0 + i) for i in range(5)], RULES)
    batch = [rec(7, T0 + 3), rec(8, T0 + 9), rec(2, T0 + 2)]
    a = apply_user("u1", first.saved, batch, RULES)
    b = apply_user("u1", first.saved, list(reversed(batch)), RULES)
    assert (a.events, a.quarantine, a.state, a.saved) == (b.events, b.quarantine, b.state, b.saved)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=2500), min_size=1, max_size=25),
    cuts=st.lists(st.integers(min_value=0, max_value=25), max_size=6),
    shuffle=st.randoms(use_true_random=False),
)
def test_any_split_into_batches_gives_the_state_of_one_batch(gaps: list[float], cuts: list[int], shuffle: Any) -> None:
    """What a crash does to the batches (more, smaller, differently cut) does not change the
    state, as long as each event arrives within the watermark of the user's latest."""
    times = [T0 + sum(gaps[: i + 1]) for i in range(len(gaps))]
    events = [rec(i, t, event_type="purchase" if i % 3 == 0 else "view") for i, t in enumerate(times)]
    whole = apply_user("u1", None, events, RULES)
    bounds = sorted({0, len(events), *[min(c, len(events)) for c in cuts]})
    saved, state = None, None
    for lo, hi in itertools.pairwise(bounds):
        batch = events[lo:hi]
        shuffle.shuffle(batch)  # within a batch the arrival order does not matter
        out = apply_user("u1", saved, batch, RULES)
        assert not out.quarantine
        saved, state = out.saved or saved, out.state or state
    assert state == whole.state
    assert json.loads(saved or "{}")["events"] == len(events)
