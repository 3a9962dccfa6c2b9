"""The collector's event rules (:func:`sparktf.online.events.check_event`, pure Python) and
the batch validator's (:func:`sparktf.data.validation.classify`, Spark) give every raw row
the same reason and the same detail: one table of tricky rows, both implementations, one
collect. The rows are text, as the stream reads landing files and as a CSV source arrives."""

from __future__ import annotations

from typing import Any

import pytest

from sparktf.config import DataConfig
from sparktf.data.schema import EVENT_COLUMNS
from sparktf.online.events import EventRules, check_event

pytestmark = pytest.mark.slow

CFG = DataConfig(min_event_time="2020-01-01", max_event_time="2030-01-01")
# The live rules stay out of the way: nothing is future-dated, no live field is given.
RULES = EventRules(CFG.event_types, CFG.min_event_time, CFG.max_event_time, max_future_s=1e15)

T = "2026-01-01T00:00:00Z"


def row(event_time: str | None = T, user: str | None = "u1", item: str | None = "i1", kind: str | None = "view",
        price: str | None = None, **rest: str | None) -> dict[str, str | None]:  # fmt: skip
    out: dict[str, str | None] = dict.fromkeys(EVENT_COLUMNS)
    out.update(event_time=event_time, user_id=user, item_id=item, event_type=kind, price=price, **rest)
    return out


ROWS: list[dict[str, str | None]] = [
    row(),
    # missing keys: null, empty, spaces only; a tab is not blank to Spark's trim
    row(user=None),
    row(user=""),
    row(item="   "),
    # the session-break entry is no item; with spaces around it, it is an ordinary id
    row(item="<session-break>"),
    row(item=" <session-break>"),
    row(item="<session-break>", event_time="yesterday"),
    row(event_time=" ", kind=None),
    row(user="\t"),
    # timestamps: ISO-8601 variants, digits are epoch seconds, the rest is not a time
    row(event_time=" 2026-01-01T00:00:00Z "),
    row(event_time="2026-01-01 00:00:00"),
    row(event_time="2026-01-01"),
    row(event_time="2026-1-2T3:04:05.123456789+05:30"),
    row(event_time="2026-01-01T00:00:00 America/New_York"),
    row(event_time="2026-01-01T00:00:00 PST"),
    row(event_time="2026-01-01T00:00:00UTC+3"),
    row(event_time="2026-01-01T00:00"),
    row(event_time="2026-01-01T00:00Z"),
    row(event_time="2026-02-30"),
    row(event_time="2026-01-01T24:00:00"),
    row(event_time="1767225600"),
    row(event_time=" 1767225600.5 "),
    row(event_time="+1767225600"),
    row(event_time="1.5e9"),
    row(event_time="2026"),
    row(event_time="abc"),
    row(event_time="９９９"),
    row(event_time="99999999999999"),
    row(event_time="-99999999999999"),
    # the range is [min, max)
    row(event_time="2019-12-31T23:59:59.999999Z"),
    row(event_time="2020-01-01T00:00:00Z"),
    row(event_time="2030-01-01T00:00:00Z"),
    row(event_time="2029-12-31T23:59:59+00:00"),
    # event types are case-sensitive and untrimmed
    row(kind="View"),
    row(kind=" view"),
    row(kind="purchase"),
    # prices: present but no finite number, negative, Java's number forms
    row(price="9.5"),
    row(price=" 3 "),
    row(price="nan"),
    row(price="NaN"),
    row(price="inf"),
    row(price="-Infinity"),
    row(price="1e400"),
    row(price="-1"),
    row(price="-0.0"),
    row(price="abc"),
    row(price="1_000"),
    row(price="2.5d"),
    row(price="0x1p3"),
    row(price="\t"),
    row(price=""),
    # unicode and long values are quoted the same way (200 characters)
    row(user="ユーザー", item="🍣", kind="vïew"),
    row(event_time="x" * 300),
    # the first broken rule wins
    row(event_time="abc", kind="nope", price="-1"),
    row(event_time="1990-01-01", kind="nope"),
    row(kind="nope", price="nan"),
]


def test_check_event_and_classify_agree_on_every_row(spark: Any) -> None:
    from sparktf.data.validation import classify

    assert len({tuple(r.values()) for r in ROWS}) == len(ROWS), "rows must be distinct (classify groups them)"
    schema = ", ".join(f"{c} string" for c in EVENT_COLUMNS)
    df = spark.createDataFrame([tuple(r[c] for c in EVENT_COLUMNS) for r in ROWS], schema)
    # Only text columns come back: a parsed time of year -2 million would not fit a datetime.
    got = classify(df, CFG).select(*[f"raw_{c}" for c in EVENT_COLUMNS], "reason", "detail").collect()
    spark_verdicts = {tuple(r[f"raw_{c}"] for c in EVENT_COLUMNS): (r["reason"], r["detail"]) for r in got}

    problems = []
    for i, raw in enumerate(ROWS):
        checked = check_event(raw, RULES, ack_time=1.8e9)
        ours = (checked.reason, checked.detail)
        theirs = spark_verdicts[tuple(raw[c] for c in EVENT_COLUMNS)]
        if ours != theirs:
            problems.append(f"row {i} {raw}: check_event {ours} != classify {theirs}")
    assert not problems, "\n".join(problems)
    reasons = {check_event(r, RULES, ack_time=1.8e9).reason for r in ROWS}
    assert reasons >= {None, "missing_key", "bad_timestamp", "timestamp_out_of_range", "unknown_event_type"}
    assert reasons >= {"bad_price", "negative_price", "reserved_item_id"}
