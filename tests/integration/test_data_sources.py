"""Reading raw sources on real Spark: files that differ from each other are read as they are or refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import DataConfig
from sparktf.data.sources import read_source
from sparktf.data.validation import REASONS, ValidationReport, validate_events
from sparktf.errors import DataError, SchemaError

pytestmark = pytest.mark.spark


def _validate(spark: Any, raw: Any, tmp_path: Path) -> ValidationReport:
    return validate_events(
        spark,
        raw,
        DataConfig(max_bad_fraction=1.0),
        events_path=str(tmp_path / "events"),
        quarantine_path=str(tmp_path / "quarantine"),
    )


def test_csv_files_with_columns_in_another_order_are_each_read_by_their_own_header(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text(
        "event_time,user_id,item_id,event_type\n2026-01-01T10:00:00Z,u1,i1,view\n2026-01-01T10:01:00Z,u2,i2,view\n"
    )
    (src / "b.csv").write_text(
        "item_id,event_time,event_type,user_id\ni3,2026-01-01T10:02:00Z,purchase,u3\ni4,2026-01-01T10:03:00Z,view,u4\n"
    )
    # A third header: one more column, in yet another order.
    (src / "c.csv").write_text("user_id,price,item_id,event_type,event_time\nu5,2.5,i5,view,2026-01-01T10:04:00Z\n")
    raw = read_source(spark, DataConfig(source="path", path=str(src), format="csv"))
    report = _validate(spark, raw, tmp_path)

    assert report.input_rows == 5 and report.good_rows == 5
    events = spark.read.parquet(str(tmp_path / "events")).collect()
    pairs = {(r["user_id"], r["item_id"], r["event_type"]) for r in events}
    assert pairs == {
        ("u1", "i1", "view"),
        ("u2", "i2", "view"),
        ("u3", "i3", "purchase"),
        ("u4", "i4", "view"),
        ("u5", "i5", "view"),
    }
    prices = {r["item_id"]: r["price"] for r in events}
    assert prices["i5"] == 2.5 and prices["i1"] is None


def test_csv_files_with_one_header_are_still_read_in_one_pass(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    for i in range(3):
        (src / f"part-{i}.csv").write_text(f"event_time,user_id,item_id,event_type\n2026-01-01,u{i},i{i},view\n")
    raw = read_source(spark, DataConfig(source="path", path=str(src), format="csv"))
    assert sorted(r["item_id"] for r in raw.collect()) == ["i0", "i1", "i2"]
    assert len(raw.inputFiles()) == 3


def test_json_where_every_record_is_malformed_is_quarantined_record_by_record(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    lines = ['{"event_time": "2026-01-01", "user_id": ', "not json at all", '{"item_id": "i1",']
    path.write_text("\n".join(lines) + "\n")
    raw = read_source(spark, DataConfig(source="path", path=str(path), format="json"))
    report = _validate(spark, raw, tmp_path)

    assert report.input_rows == 3 and report.good_rows == 0
    assert report.quarantined == {**dict.fromkeys(REASONS, 0), "malformed_record": 3}
    bad = spark.read.parquet(str(tmp_path / "quarantine")).collect()
    assert sorted(r["raw_record"] for r in bad) == sorted(lines)
    assert all(r["reason"] == "malformed_record" and r["detail"].startswith("Spark could not parse") for r in bad)


def test_json_with_valid_records_but_no_key_column_is_still_a_schema_error(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text('{"event_time": "2026-01-01", "user_id": "u1", "event_type": "view"}\n{broken\n')
    with pytest.raises(SchemaError) as info:
        read_source(spark, DataConfig(source="path", path=str(path), format="json"))
    assert "'item_id'" in info.value.message


def _parquet_dir(spark: Any, path: Path) -> None:
    spark.createDataFrame(
        [("2026-01-01T10:00:00Z", "u1", "i1", "view"), ("2026-01-01T10:01:00Z", "u2", "i2", "view")],
        "event_time string, user_id string, item_id string, event_type string",
    ).coalesce(1).write.parquet(str(path))


def test_a_csv_file_among_parquet_files_is_refused_naming_it(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "pq"
    _parquet_dir(spark, src)
    stray = src / "zz-export.csv"  # sorts after the part file, so Spark's schema comes from the Parquet one
    stray.write_text("event_time,user_id,item_id,event_type\n2026-01-01,u9,i9,view\n")
    with pytest.raises(DataError) as info:
        read_source(spark, DataConfig(source="path", path=str(src), format="parquet"))
    assert str(stray) in info.value.message and "is not a Parquet file" in info.value.message
    assert "data.format" in info.value.message
    assert info.value.hint and "Move files of other formats" in info.value.hint
    assert info.value.context["file"].endswith("zz-export.csv")


def test_a_damaged_parquet_file_fails_validation_as_a_data_error_naming_it(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "pq"
    _parquet_dir(spark, src)
    # Parquet's magic bytes at both ends, garbage between: it passes the cheap check and
    # fails only when Spark reads it, inside the quarantine write.
    damaged = src / "zz-damaged.parquet"
    damaged.write_bytes(b"PAR1" + b"\x00garbage" * 20 + (16).to_bytes(4, "little") + b"PAR1")
    raw = read_source(spark, DataConfig(source="path", path=str(src), format="parquet"))
    with pytest.raises(DataError) as info:
        _validate(spark, raw, tmp_path)
    assert type(info.value) is DataError
    assert "zz-damaged.parquet" in info.value.message and "could not read" in info.value.message
    assert info.value.hint and "data.format" in info.value.hint


def test_the_validation_report_counts_every_row_of_mixed_header_csv(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("event_time,user_id,item_id,event_type\n2026-01-01,u1,i1,view\n2026-01-01,u1\n")
    (src / "b.csv").write_text("user_id,item_id,event_time,event_type\nu2,i2,2026-01-01,wishlist\n")
    raw = read_source(spark, DataConfig(source="path", path=str(src), format="csv"))
    report = validate_events(
        spark,
        raw,
        DataConfig(max_bad_fraction=1.0),
        events_path=str(tmp_path / "events"),
        quarantine_path=str(tmp_path / "quarantine"),
        report_path=str(tmp_path / "validation.json"),
    )
    assert report.input_rows == 3 and report.good_rows == 1
    assert report.quarantined["malformed_record"] == 1 and report.quarantined["unknown_event_type"] == 1
    bad = {r["reason"]: r for r in spark.read.parquet(str(tmp_path / "quarantine")).collect()}
    assert bad["unknown_event_type"]["user_id"] == "u2" and bad["unknown_event_type"]["item_id"] == "i2"
    assert json.loads((tmp_path / "validation.json").read_text())["good_rows"] == 1
