"""Validation on real Spark: every rule, every source format, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import DataConfig
from sparktf.data.schema import EVENTS_DDL
from sparktf.data.sources import read_source
from sparktf.data.validation import QUARANTINE_COLUMNS, REASONS, ValidationReport, validate_events
from sparktf.errors import DataValidationError, SchemaError

pytestmark = pytest.mark.spark

COLUMNS = ("event_time", "user_id", "item_id", "event_type", "session_id", "category", "brand", "price", "sale_id")


def row(ts: str | None, user: str | None, item: str | None, kind: str | None = "view", price: str | None = None):
    return (ts, user, item, kind, None, "Shoes", "Acme", price, None)


# (row, expected reason or None for good); item_id (or user_id when the item is missing) names the case.
CASES: list[tuple[tuple[Any, ...], str | None]] = [
    (row("2026-01-01T10:00:00Z", "u1", "good_iso", price="10.5"), None),
    (row("1767261600", "u1", "good_epoch", "purchase"), None),
    (row("2026-01-01 10:00:00", "u2", "good_zero_price", "add_to_cart", "0"), None),
    (row("2026-01-01", None, "no_user"), "missing_key"),
    (row("2026-01-01", "u3", "   "), "missing_key"),
    (row(None, "u4", "no_time"), "missing_key"),
    (row("2026-01-01", "u4", "no_type", None), "missing_key"),
    (row("yesterday", "u5", "<session-break>"), "reserved_item_id"),
    (row("yesterday", "u5", "bad_ts"), "bad_timestamp"),
    (row("2026-13-45", "u5", "bad_date"), "bad_timestamp"),
    (row("1990-05-01", "u6", "too_old"), "timestamp_out_of_range"),
    (row("2200-01-01T00:00:00", "u6", "too_new"), "timestamp_out_of_range"),
    (row("99999999999999", "u6", "epoch_overflow"), "timestamp_out_of_range"),
    (row("2026-01-01", "u7", "wishlist", "wishlist"), "unknown_event_type"),
    (row("2026-01-01", "u7", "upper", "VIEW"), "unknown_event_type"),
    (row("2026-01-01", "u8", "price_text", price="ten"), "bad_price"),
    (row("2026-01-01", "u8", "price_nan", price="NaN"), "bad_price"),
    (row("2026-01-01", "u8", "price_negative", price="-1.0"), "negative_price"),
    (row(None, None, "many_problems", "wishlist", "-5"), "missing_key"),  # the first rule broken wins
]
DUPLICATED = row("2026-01-02T00:00:00Z", "u9", "dup", price="3")  # 3 copies: 1 kept, 2 quarantined
BAD_TWICE = row("2026-01-02", None, "bad_twice")  # 2 copies, both quarantined


def _raw(spark: Any) -> Any:
    rows = [r for r, _ in CASES] + [DUPLICATED] * 3 + [BAD_TWICE] * 2
    return spark.createDataFrame(rows, ", ".join(f"{c} string" for c in COLUMNS))


def _validate(spark: Any, raw: Any, tmp_path: Path, **cfg: Any) -> ValidationReport:
    return validate_events(
        spark,
        raw,
        DataConfig(**cfg),
        events_path=str(tmp_path / "events"),
        quarantine_path=str(tmp_path / "quarantine"),
        report_path=str(tmp_path / "validation.json"),
    )


def test_each_rule_sends_its_rows_to_the_quarantine_and_nothing_is_lost(spark: Any, tmp_path: Path) -> None:
    raw = _raw(spark)
    report = _validate(spark, raw, tmp_path, max_bad_fraction=1.0)

    quarantine = spark.read.parquet(str(tmp_path / "quarantine"))
    events = spark.read.parquet(str(tmp_path / "events"))
    assert tuple(quarantine.columns) == QUARANTINE_COLUMNS
    got = {}
    for r in quarantine.collect():
        key = r["item_id"] if r["item_id"] and r["item_id"].strip() else r["user_id"]
        got.setdefault(key, []).append(r["reason"])
    for values, reason in CASES:
        key = values[2] if values[2] and values[2].strip() else values[1]
        if reason is None:
            assert key not in got, key
        else:
            assert got.get(key) == [reason], key
    assert sorted(got["dup"]) == ["duplicate", "duplicate"]
    assert got["bad_twice"] == ["missing_key", "missing_key"]

    good = {r["item_id"] for r in events.collect()}
    assert good == {"good_iso", "good_epoch", "good_zero_price", "dup"}
    # good + quarantined = input, counted three independent ways
    assert raw.count() == report.input_rows == events.count() + quarantine.count()
    assert report.good_rows == events.count() and report.quarantined_rows == quarantine.count()
    expected = {reason: 0 for reason in REASONS}
    for _, reason in CASES:
        if reason:
            expected[reason] += 1
    expected["duplicate"] += 2
    expected["missing_key"] += 2
    assert report.quarantined == expected
    assert json.loads((tmp_path / "validation.json").read_text())["quarantined"] == expected


def test_good_rows_are_parsed_into_the_event_schema(spark: Any, tmp_path: Path) -> None:
    _validate(spark, _raw(spark), tmp_path, max_bad_fraction=1.0)
    events = spark.read.parquet(str(tmp_path / "events"))
    assert events.schema.simpleString() == f"struct<{EVENTS_DDL.replace(', ', ',').replace(' ', ':')}>"
    by_item = {r["item_id"]: r for r in events.collect()}
    iso, epoch = by_item["good_iso"], by_item["good_epoch"]
    assert iso["event_time"] == epoch["event_time"]  # 2026-01-01T10:00:00Z == epoch 1767261600
    assert iso["price"] == 10.5 and by_item["good_zero_price"]["price"] == 0.0 and epoch["price"] is None


def test_quarantine_keeps_the_raw_text_and_says_what_to_do(spark: Any, tmp_path: Path) -> None:
    _validate(spark, _raw(spark), tmp_path, max_bad_fraction=1.0)
    rows = {r["item_id"]: r for r in spark.read.parquet(str(tmp_path / "quarantine")).collect()}
    assert rows["bad_ts"]["event_time"] == "yesterday"
    assert "'yesterday'" in rows["bad_ts"]["detail"] and "ISO-8601" in rows["bad_ts"]["detail"]
    assert "data.min_event_time" in rows["too_old"]["detail"] and "'1990-05-01'" in rows["too_old"]["detail"]
    assert "'wishlist'" in rows["wishlist"]["detail"]
    assert "impression, click, view, add_to_cart, purchase" in rows["wishlist"]["detail"]
    assert rows["price_text"]["price"] == "ten" and "'ten'" in rows["price_text"]["detail"]
    assert rows["no_time"]["detail"] == "event_time is null or blank"
    assert rows["many_problems"]["detail"] == "event_time, user_id is null or blank"
    assert "3 identical rows" in rows["dup"]["detail"]


def test_too_many_bad_rows_fail_the_run_and_keep_the_quarantine(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()  # a stale table from an earlier run must not survive
    with pytest.raises(DataValidationError) as info:
        _validate(spark, _raw(spark), tmp_path, max_bad_fraction=0.1)
    msg = info.value.message
    total = len(CASES) + 5
    bad = sum(1 for _, r in CASES if r) + 4
    assert f"{bad:,} of {total:,} input rows" in msg and "data.max_bad_fraction = 0.1" in msg
    assert f"missing_key {sum(r == 'missing_key' for _, r in CASES) + 2}," in msg
    assert str(tmp_path / "quarantine") in msg
    assert info.value.hint and "max_bad_fraction" in info.value.hint
    assert not (tmp_path / "events").exists()
    assert spark.read.parquet(str(tmp_path / "quarantine")).count() == bad
    assert json.loads((tmp_path / "validation.json").read_text())["passed"] is False


def test_csv_with_malformed_lines_loses_nothing(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_time,user_id,item_id,event_type,price\n"
        "2026-01-01T10:00:00Z,u1,i1,view,12.50\n"
        '2026-01-01T10:05:00Z,u1,"i2, the big one",purchase,3\n'
        "2026-01-01T10:06:00Z,u1,i3,view,1,surplus,fields\n"
        "2026-01-01T10:07:00Z,u2\n"
        "2026-01-01T10:08:00Z,u2,i4,view,\n"
    )
    raw = read_source(spark, DataConfig(source="path", path=str(path), format="csv"))
    report = _validate(spark, raw, tmp_path, max_bad_fraction=1.0)
    assert report.input_rows == 5 == raw.count()
    events = {r["item_id"]: r for r in spark.read.parquet(str(tmp_path / "events")).collect()}
    assert set(events) == {"i1", "i2, the big one", "i4"}
    assert events["i1"]["price"] == 12.5 and events["i4"]["price"] is None
    bad = spark.read.parquet(str(tmp_path / "quarantine")).collect()
    assert sorted(r["reason"] for r in bad) == ["malformed_record", "malformed_record"]
    assert {r["raw_record"] for r in bad} == {
        "2026-01-01T10:06:00Z,u1,i3,view,1,surplus,fields",
        "2026-01-01T10:07:00Z,u2",
    }


def test_json_lines_with_a_broken_record(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(
        '{"event_time": "2026-01-01T10:00:00Z", "user_id": 7, "item_id": "i1", "event_type": "view", "price": 12.5}\n'
        '{"event_time": "2026-01-01T10:01:00Z", "user_id": "7", "item_id": "i2", "event_type": "view", "extra": 1}\n'
        '{"event_time": "2026-01-01T10:02:00Z", "user_id": \n'
    )
    raw = read_source(spark, DataConfig(source="path", path=str(path), format="json"))
    report = _validate(spark, raw, tmp_path, max_bad_fraction=1.0)
    assert report.input_rows == 3 and report.quarantined == {**dict.fromkeys(REASONS, 0), "malformed_record": 1}
    assert report.ignored_columns == ("extra",)
    events = {r["item_id"]: r for r in spark.read.parquet(str(tmp_path / "events")).collect()}
    assert events["i1"]["user_id"] == "7" and events["i1"]["price"] == 12.5


def test_typed_parquet_and_a_spark_table(spark: Any, tmp_path: Path) -> None:
    import datetime as dt

    ts = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)
    typed = spark.createDataFrame(
        [(ts, 42, 7, "view", -2.0), (ts, 42, 8, "view", None), (None, 43, 9, "view", 1.0)],
        "event_time timestamp, user_id long, item_id long, event_type string, price double",
    )
    typed.write.parquet(str(tmp_path / "typed"))
    report = _validate(
        spark,
        read_source(spark, DataConfig(source="path", path=str(tmp_path / "typed"))),
        tmp_path,
        max_bad_fraction=1.0,
    )
    assert (report.good_rows, report.quarantined["negative_price"], report.quarantined["missing_key"]) == (1, 1, 1)
    good = spark.read.parquet(str(tmp_path / "events")).selectExpr("*", "unix_seconds(event_time) AS s").first()
    assert (good["user_id"], good["item_id"], good["s"]) == ("42", "8", int(ts.timestamp()))

    epoch = spark.createDataFrame(
        [(1767261600, "u", "i", "view")], "event_time long, user_id string, item_id string, event_type string"
    )
    epoch.createOrReplaceTempView("sparktf_test_events")
    report = _validate(spark, read_source(spark, DataConfig(source="table", table="sparktf_test_events")), tmp_path)
    assert report.good_rows == 1
    assert spark.read.parquet(str(tmp_path / "events")).selectExpr("unix_seconds(event_time)").first()[0] == 1767261600


def test_a_source_without_a_key_column_is_a_schema_error(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "no_item.csv"
    path.write_text("event_time,user_id,event_type\n2026-01-01,u1,view\n")
    with pytest.raises(SchemaError) as info:
        read_source(spark, DataConfig(source="path", path=str(path), format="csv"))
    assert "'item_id'" in info.value.message and "event_time, user_id, event_type" in info.value.message
    assert str(path) in info.value.message
