"""The feature pipeline on hand-made events whose every output is worked out by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import FeatureConfig
from sparktf.data.features import EXAMPLE_COLUMNS, FeaturePaths, build_features
from sparktf.data.schema import EVENTS_DDL
from sparktf.errors import ConfigError, DataError

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
TYPES = ("view", "add_to_cart", "purchase")


def ev(user: str, minute: float, item: str, kind: str = "view", session: str | None = None) -> tuple[Any, ...]:
    price = {"i1": 4.0, "i2": 12.0, "i5": None}.get(item, 60.0)
    return (T0 + dt.timedelta(minutes=minute), user, item, kind, session, "Toys & Games", "acme", price, None)


EVENTS = [
    # A: i1 viewed then carted (one step), i2, i3; two hours later i4, i2 again, i5.
    ev("A", 0, "i1"),
    ev("A", 1, "i1", "add_to_cart"),
    ev("A", 5, "i2"),
    ev("A", 20, "i3"),
    ev("A", 140, "i4"),
    ev("A", 141, "i2"),
    ev("A", 150, "i5"),
    # B: three steps, the minimum; i6 and i7 are never in a train part.
    ev("B", 0, "i2"),
    ev("B", 10, "i6"),
    ev("B", 11, "i7", "purchase"),
    # C: two steps, too few for examples; i9 appears nowhere else.
    ev("C", 0, "i1"),
    ev("C", 60, "i9"),
    # D: comes with its own session id, which is kept; view and cart at the same second.
    ev("D", 0, "i3", session="web-1"),
    ev("D", 0, "i3", "add_to_cart", session="web-1"),
    ev("D", 100, "i1", session="web-1"),
    ev("D", 101, "i4", session="web-1"),
    # E: three steps, all late (after the time split's cutoff).
    ev("E", 30, "i2"),
    ev("E", 31, "i3"),
    ev("E", 32, "i4"),
]


@pytest.fixture(scope="module")
def events_path(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("features") / "events")
    spark.createDataFrame(EVENTS, EVENTS_DDL).write.parquet(path)
    return path


def _build(spark: Any, events_path: str, out: Path, **cfg: Any) -> tuple[dict[str, Any], FeaturePaths]:
    stats = build_features(spark, events_path, str(out), FeatureConfig(**cfg), event_types=TYPES, live_events_path="")
    return stats, FeaturePaths(str(out))


@pytest.fixture(scope="module")
def leave_last_out(spark: Any, events_path: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _build(spark, events_path, tmp_path_factory.mktemp("llo"), max_history=3)


def _examples(spark: Any, paths: FeaturePaths) -> dict[tuple[str, str], tuple[list[str], str]]:
    rows = spark.read.parquet(paths.examples).collect()
    return {(r["user_id"], r["target"] + "@" + r["split"]): (list(r["history"]), r["split"]) for r in rows}


def test_leave_last_out_examples_are_exactly_the_previous_steps(spark: Any, leave_last_out: Any) -> None:
    _, paths = leave_last_out
    got = _examples(spark, paths)
    assert got == {
        ("A", "i2@train"): (["i1"], "train"),
        ("A", "i3@train"): (["i1", "i2"], "train"),
        ("A", "i4@train"): (["i1", "i2", "i3"], "train"),
        ("A", "i2@validation"): (["i2", "i3", "i4"], "validation"),  # max_history = 3
        ("A", "i5@test"): (["i3", "i4", "i2"], "test"),
        ("B", "i6@validation"): (["i2"], "validation"),
        ("B", "i7@test"): (["i2", "i6"], "test"),
        ("D", "i1@validation"): (["i3"], "validation"),
        ("D", "i4@test"): (["i3", "i1"], "test"),
        ("E", "i3@validation"): (["i2"], "validation"),
        ("E", "i4@test"): (["i2", "i3"], "test"),
    }


def test_example_columns_and_target_features(spark: Any, leave_last_out: Any) -> None:
    _, paths = leave_last_out
    df = spark.read.parquet(paths.examples)
    assert sorted(df.columns) == sorted(EXAMPLE_COLUMNS)
    types = dict(df.dtypes)
    assert types["history"] == "array<string>" and types["history_len"] == "int"
    assert types["target_price_bucket"] == "int" and types["event_time"] == "timestamp"
    rows = {(r["user_id"], r["target"], r["split"]): r for r in df.collect()}
    a_test = rows[("A", "i5", "test")]
    assert a_test["history_len"] == 3 and a_test["target_category"] == "toys_and_games"
    assert a_test["target_price_bucket"] == 0  # i5 has no price
    assert rows[("B", "i6", "validation")]["target_price_bucket"] == 5  # 60.0 in [50, 100), the 5th bucket


def test_vocabularies_popularity_and_seen_come_from_the_train_part_only(spark: Any, leave_last_out: Any) -> None:
    stats, paths = leave_last_out
    # Train part: A's i1 i2 i3 i4, B's i2, D's i3 and E's i2 (C has too few steps).
    items = {r["item_id"]: (r["index"], r["count"]) for r in spark.read.parquet(paths.item_vocab).collect()}
    assert items == {"i2": (1, 3), "i3": (2, 2), "i1": (3, 1), "i4": (4, 1)}
    users = {r["user_id"]: (r["index"], r["count"]) for r in spark.read.parquet(paths.user_vocab).collect()}
    assert users == {"A": (1, 4), "B": (2, 1), "D": (3, 1), "E": (4, 1)}
    seen = {r["user_id"]: list(r["items"]) for r in spark.read.parquet(paths.seen).collect()}
    assert seen == {"A": ["i1", "i2", "i3", "i4"], "B": ["i2"], "D": ["i3"], "E": ["i2"]}
    table = {r["item_id"]: r for r in spark.read.parquet(paths.items).collect()}
    assert set(table) == {f"i{k}" for k in (1, 2, 3, 4, 5, 6, 7, 9)}
    assert (table["i2"]["count"], table["i2"]["popularity_rank"]) == (3, 1)
    assert (table["i7"]["count"], table["i7"]["popularity_rank"]) == (0, None)  # test-only item
    assert table["i9"]["count"] == 0  # only a dropped user saw it
    assert (table["i1"]["price_bucket"], table["i2"]["price_bucket"]) == (1, 3)
    assert stats["targets_out_of_vocabulary"] == {"train": 0, "validation": 1, "test": 2}  # i6; i5, i7


def test_short_users_are_counted_not_silently_dropped(spark: Any, leave_last_out: Any) -> None:
    stats, paths = leave_last_out
    assert stats["users"] == {
        "total": 5,
        "with_examples": 4,
        "dropped_below_min_user_events": 1,
        "steps_of_dropped_users": 2,
    }
    assert stats["events"] == {"input": len(EVENTS), "positive": len(EVENTS), "steps": 6 + 3 + 2 + 3 + 3}
    assert stats["examples"] == {"train": 3, "validation": 4, "test": 4}
    assert json.loads(Path(paths.stats).read_text())["examples"] == stats["examples"]


def test_sessions_from_gaps_and_given_ids_kept(spark: Any, leave_last_out: Any) -> None:
    _, paths = leave_last_out
    sessions = {(r["user_id"], r["session_id"]): r["num_steps"] for r in spark.read.parquet(paths.sessions).collect()}
    assert sessions == {
        ("A", "A:1"): 3,
        ("A", "A:2"): 3,
        ("B", "B:1"): 3,
        ("C", "C:1"): 1,
        ("C", "C:2"): 1,
        ("D", "web-1"): 3,
        ("E", "E:1"): 3,
    }


def test_time_split(spark: Any, events_path: str, tmp_path: Path) -> None:
    cutoff = (T0 + dt.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S")
    stats, paths = _build(spark, events_path, tmp_path, split="time", time_cutoff=cutoff)
    got = _examples(spark, paths)
    assert got == {
        # A: i1, i2 before the cutoff (i2 is the validation step), i3 i4 i2 i5 after it.
        ("A", "i2@validation"): (["i1"], "validation"),
        ("A", "i3@test"): (["i1", "i2"], "test"),
        ("A", "i4@test"): (["i1", "i2", "i3"], "test"),
        ("A", "i2@test"): (["i1", "i2", "i3", "i4"], "test"),
        ("A", "i5@test"): (["i1", "i2", "i3", "i4", "i2"], "test"),
        # B: all three steps before the cutoff: the last one validates, no test.
        ("B", "i6@train"): (["i2"], "train"),
        ("B", "i7@validation"): (["i2", "i6"], "validation"),
        # D: i3 before the cutoff (one step: train, no validation), i1 i4 after.
        ("D", "i1@test"): (["i3"], "test"),
        ("D", "i4@test"): (["i3", "i1"], "test"),
        # E: everything after the cutoff; its first step has no history, so no example.
        ("E", "i3@test"): (["i2"], "test"),
        ("E", "i4@test"): (["i2", "i3"], "test"),
    }
    items = {r["item_id"]: r["count"] for r in spark.read.parquet(paths.item_vocab).collect()}
    assert items == {"i1": 1, "i2": 1, "i6": 1, "i3": 1}  # A's i1, B's i2 and i6, D's i3
    assert stats["targets_without_history"] == {"validation": 0, "test": 1}  # E's first step


def test_rare_items_fall_out_of_the_vocabulary_and_are_counted(spark: Any, events_path: str, tmp_path: Path) -> None:
    stats, paths = _build(spark, events_path, tmp_path, min_item_count=2)
    assert {r["item_id"] for r in spark.read.parquet(paths.item_vocab).collect()} == {"i2", "i3"}
    assert stats["vocab"]["items_below_min_item_count"] == 2
    assert stats["targets_out_of_vocabulary"]["train"] == 1  # train targets are A's i2, i3 and i4


def test_no_eligible_user_is_an_error_after_writing_the_stats(spark: Any, events_path: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="min_user_events = 7"):
        _build(spark, events_path, tmp_path, min_user_events=7)
    assert json.loads((tmp_path / "stats.json").read_text())["users"]["with_examples"] == 0


def test_positive_types_must_pass_validation(spark: Any, events_path: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['wishlist'\] has no type.*data.event_types"):
        _build(spark, events_path, tmp_path, positive_event_types=("wishlist",))


def test_events_the_stream_validated_are_read_beside_the_batch_events(
    spark: Any, events_path: str, leave_last_out: Any, tmp_path: Path
) -> None:
    """``data/live/events`` (with its extra columns and batch partitions) joins ``data/events``:
    C's two steps become three with a live one, enough for examples."""
    from sparktf.data.schema import LIVE_EVENT_COLUMNS, LIVE_EVENT_DDL

    live = str(tmp_path / "live" / "events")
    # By name, so that a live column added later reads as null here too.
    values = {
        "event_time": T0 + dt.timedelta(minutes=200),
        "user_id": "C",
        "item_id": "i2",
        "event_type": "view",
        "event_id": "e-1",
        "ack_time": 1.0,
    }
    row = tuple(values.get(c) for c in LIVE_EVENT_COLUMNS)
    spark.createDataFrame([row], LIVE_EVENT_DDL).write.parquet(f"{live}/batch_id=0")
    without, _ = leave_last_out
    stats = build_features(
        spark, events_path, str(tmp_path / "with"), FeatureConfig(max_history=3), event_types=TYPES,
        live_events_path=live,
    )  # fmt: skip
    assert stats["users"]["dropped_below_min_user_events"] == without["users"]["dropped_below_min_user_events"] - 1
    assert stats["inputs"]["live_events"] == live
    test = {
        r["user_id"]: r["target"]
        for r in spark.read.parquet(str(tmp_path / "with" / "examples")).collect()
        if r["split"] == "test"
    }
    assert test["C"] == "i2"
