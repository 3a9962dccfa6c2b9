"""The live rules of :func:`sparktf.online.events.check_event` (the batch ones are checked
against Spark in tests/integration/test_event_rules_parity.py), the normalized event, and
its landing record, which reads back to the same event."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.data.schema import LANDING_FIELDS, LANDING_READ_DDL
from sparktf.data.validation import REASONS
from sparktf.online.events import (
    LIVE_REASONS,
    EventRules,
    check_event,
    epoch_seconds,
    landing_record,
    new_event_id,
    parse_spark_timestamp,
    with_event_id,
)

RULES = EventRules(("view", "add_to_cart", "purchase"), "2020-01-01", "2030-01-01", max_future_s=60.0)
ACK = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def ev(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_time": "2026-01-01T00:00:00Z",
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "view",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def reason(**fields: Any) -> str | None:
    return check_event(ev(**fields), RULES, ack_time=ACK).reason


def test_reasons_are_the_batch_ones_then_the_live_ones() -> None:
    assert LIVE_REASONS[: len(REASONS)] == REASONS
    assert LIVE_REASONS[len(REASONS) :] == ("bad_field", "future_dated", "late_event")


def test_a_good_event_is_normalized_to_the_landing_fields() -> None:
    checked = check_event(
        ev(event_time=1767225600.5, user_id=42, price=" 9.5 ", position="3", event_id="e-1", request_id="r1"),
        RULES,
        ack_time=ACK,
    )
    assert checked.ok and checked.event is not None
    assert list(checked.event) == [f.name for f in LANDING_FIELDS]
    assert checked.event["event_time"] == "2026-01-01T00:00:00.500000Z"
    assert checked.event["user_id"] == "42" and checked.event["price"] == 9.5 and checked.event["position"] == 3
    assert checked.event["event_id"] == "e-1" and checked.event["ack_time"] == ACK


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"event_id": ""}, "bad_field"),
        ({"event_id": "   "}, "bad_field"),
        ({"event_id": "x" * 201}, "bad_field"),
        ({"event_id": 7}, "bad_field"),
        ({"event_id": "x" * 200}, None),
        ({"request_id": ["r"]}, "bad_field"),
        ({"request_id": "r" * 201}, "bad_field"),
        ({"session_id": {"a": 1}}, "bad_field"),
        ({"session_id": True}, "bad_field"),
        ({"session_id": 12}, None),
        ({"position": 0}, "bad_field"),
        ({"position": -1}, "bad_field"),
        ({"position": 1.5}, "bad_field"),
        ({"position": True}, "bad_field"),
        ({"position": "two"}, "bad_field"),
        ({"position": 2**31}, "bad_field"),
        ({"position": " 3 "}, None),
        ({"user_id": [1]}, "bad_field"),
        # the batch rules come first
        ({"position": 0, "price": "-1"}, "negative_price"),
        ({"event_id": 7, "event_type": "View"}, "unknown_event_type"),
        # a JSON boolean is no number (nor a time), NaN no price
        ({"price": True}, "bad_price"),
        ({"price": math.nan}, "bad_price"),
        ({"price": -0.5}, "negative_price"),
        ({"event_time": True}, "bad_timestamp"),
        ({"event_time": math.nan}, "bad_timestamp"),
        ({"event_time": 10**400}, "timestamp_out_of_range"),
        ({"event_time": ["2026-01-01"]}, "bad_timestamp"),
        ({"user_id": None}, "missing_key"),
        ({"item_id": ...}, "missing_key"),
    ],
)
def test_field_rules(fields: dict[str, Any], expected: str | None) -> None:
    assert reason(**fields) == expected


def test_future_dated_is_measured_from_the_ack_time() -> None:
    assert reason(event_time=ACK + 60) is None
    assert reason(event_time=ACK + 61) == "future_dated"
    checked = check_event(ev(event_time=ACK + 3600), RULES, ack_time=ACK)
    assert checked.detail is not None and "stream.max_future_s" in checked.detail
    # the batch rules still come first
    assert reason(event_time=ACK + 3600, event_type="nope") == "unknown_event_type"


def test_unknown_fields_are_ignored_and_named_and_non_objects_are_malformed() -> None:
    checked = check_event(ev(colour="red", Price=3, ack_time="1"), RULES, ack_time=ACK)
    assert checked.ok and checked.ignored == ("Price", "colour")
    for raw in ([1, 2], "text", None, 3):
        bad = check_event(raw, RULES, ack_time=ACK)  # type: ignore[arg-type]
        assert bad.reason == "malformed_record" and bad.event is None
    corrupt = check_event({"_corrupt_record": "{not json"}, RULES, ack_time=ACK)
    assert corrupt.reason == "malformed_record" and corrupt.detail == "Spark could not parse the record '{not json'"


def test_details_name_the_field_the_value_and_the_setting() -> None:
    d = check_event(ev(event_type="x" * 300), RULES, ack_time=ACK).detail
    assert d == f"event_type '{'x' * 200}' is not one of view, add_to_cart, purchase (data.event_types)"
    d = check_event(ev(user_id=" ", item_id=None), RULES, ack_time=ACK).detail
    assert d == "user_id, item_id is null or blank"
    d = check_event(ev(event_time="2040-01-01"), RULES, ack_time=ACK).detail
    assert d is not None and "(data.min_event_time, data.max_event_time)" in d


def test_event_ids_are_kept_or_given() -> None:
    given_id = with_event_id({"event_id": "mine"})
    assert given_id["event_id"] == "mine"
    fresh = {with_event_id({"event_id": None})["event_id"] for _ in range(100)}
    assert len(fresh) == 100 and all(len(i) == 32 for i in fresh)
    assert new_event_id() != new_event_id()


def test_the_landing_record_is_text_for_the_read_ddl() -> None:
    checked = check_event(ev(price=1e-7, position=2), RULES, ack_time=ACK)
    assert checked.event is not None
    record = landing_record(with_event_id(checked.event))
    assert all(v is None or isinstance(v, str) for v in record.values())
    assert [f"{k} string" for k in record] == LANDING_READ_DDL.split(", ")[: len(record)]
    assert record["ack_time"] == repr(ACK) and record["position"] == "2"


def test_epoch_seconds_reads_what_the_normalizer_writes() -> None:
    assert epoch_seconds("2026-01-01T00:00:00.250000Z") == 1_767_225_600.25
    assert epoch_seconds("2026-01-01T01:00:00+01:00") == 1_767_225_600
    with pytest.raises(ValueError, match="not a timestamp"):
        epoch_seconds("soon")
    assert parse_spark_timestamp("2026-02-29") is None


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).filter(lambda s: s.strip(" "))
_EVENTS = st.fixed_dictionaries(
    {
        "event_time": st.one_of(
            st.floats(1.6e9, 1.8e9),
            st.integers(1_600_000_000, 1_800_000_000),
            st.datetimes().map(lambda d: d.isoformat()),
        ),
        "user_id": st.one_of(_TEXT, st.integers(0, 10**9)),
        "item_id": _TEXT,
        "event_type": st.sampled_from(RULES.event_types),
    },
    optional={
        "price": st.one_of(st.floats(0, 1e6), st.integers(0, 10**6), st.floats(0, 1e3).map(repr)),
        "session_id": _TEXT,
        "category": _TEXT,
        "brand": st.none(),
        "sale_id": _TEXT,
        "event_id": _TEXT.filter(lambda s: s.strip() and len(s) <= 200),
        "request_id": _TEXT,
        "position": st.one_of(st.integers(1, 1000), st.integers(1, 1000).map(str)),
    },
)


@settings(max_examples=300, deadline=None)
@given(raw=_EVENTS)
def test_a_landing_record_reads_back_to_the_same_event(raw: dict[str, Any]) -> None:
    rules = EventRules(RULES.event_types, RULES.min_event_time, RULES.max_event_time, max_future_s=1e12)
    first = check_event(raw, rules, ack_time=ACK)
    if first.event is None:  # out of range: datetimes() covers years 1 to 9999
        assert first.reason == "timestamp_out_of_range"
        return
    event = with_event_id(first.event)
    record = json.loads(json.dumps(landing_record(event)))  # through a file, as Spark reads it
    again = check_event(record, rules, ack_time=float(record["ack_time"]))
    assert again.ok and again.event == event and again.ignored == ()
