"""MovieLens-100K from the recbole wheel (fetched from PyPI, never committed) and GroupLens files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparktf.config import DataConfig, FeatureConfig
from sparktf.data.features import build_features
from sparktf.data.movielens import GENRES, load_movielens
from sparktf.data.validation import validate_events

pytestmark = pytest.mark.spark


def _validate(spark: Any, raw: Any, tmp_path: Path) -> Any:
    return validate_events(
        spark,
        raw,
        DataConfig(max_bad_fraction=0.5),
        events_path=str(tmp_path / "events"),
        quarantine_path=str(tmp_path / "quarantine"),
    )


@pytest.mark.slow
def test_the_real_movielens_100k_through_validation_and_features(spark: Any, tmp_path: Path) -> None:
    raw = load_movielens(spark)
    report = _validate(spark, raw, tmp_path)
    # The published size of ML-100K: 100,000 ratings by 943 users of 1,682 movies.
    assert report.input_rows == report.good_rows == 100_000
    assert report.ignored_columns == ("rating",)
    events = spark.read.parquet(str(tmp_path / "events"))
    assert events.select("user_id").distinct().count() == 943
    assert events.select("item_id").distinct().count() == 1_682
    stats = build_features(
        spark,
        str(tmp_path / "events"),
        str(tmp_path / "features"),
        FeatureConfig(),
        event_types=("view",),
        live_events_path="",
    )
    # Every ML-100K user has at least 20 ratings, so each gets one validation and one test example.
    assert stats["users"]["dropped_below_min_user_events"] == 0
    assert stats["examples"]["validation"] == stats["examples"]["test"] == 943
    assert stats["examples"]["train"] == 100_000 - 3 * 943  # no movie is rated twice by one user
    assert stats["vocab"]["users"] == 943
    genres = {r["category"] for r in spark.read.parquet(str(tmp_path / "features/items")).collect()}
    assert {"comedy", "drama", "action"} <= genres and len(genres) <= len(GENRES)


def test_a_grouplens_u_data_file_with_a_broken_line(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text(
        "1\t10\t5\t874965758\n1\t11\t3\t874965758\n2\t10\t4\t888550871\nthis line is broken\n"
    )
    flags = ["0"] * len(GENRES)
    flags[GENRES.index("Horror")] = "1"
    (tmp_path / "u.item").write_text("10|Some Film (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n")
    raw = load_movielens(spark, str(tmp_path / "u.data"))
    report = _validate(spark, raw, tmp_path)
    assert (report.input_rows, report.good_rows, report.quarantined["malformed_record"]) == (4, 3, 1)
    bad = spark.read.parquet(str(tmp_path / "quarantine")).first()
    assert bad["raw_record"].endswith("u.data:4: this line is broken")
    rows = {
        (r["user_id"], r["item_id"]): r
        for r in spark.read.parquet(str(tmp_path / "events")).selectExpr("*", "unix_micros(event_time) AS us").collect()
    }
    assert rows[("1", "10")]["category"] == "Horror" and rows[("1", "11")]["category"] is None
    # Same second for user 1: the file's order is kept, one microsecond apart.
    assert rows[("1", "11")]["us"] - rows[("1", "10")]["us"] == 1
    assert rows[("2", "10")]["us"] == 888550871 * 1_000_000 and rows[("2", "10")]["event_type"] == "view"
