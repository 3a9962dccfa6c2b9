"""The SQL functions, called the way analysts call them: through spark.sql."""

from __future__ import annotations

from typing import Any

import pytest

from sparktf.config import FeatureConfig
from sparktf.data.item_attributes import normalize_category, price_bucket, price_bucket_column

pytestmark = pytest.mark.spark

NAMES = ["Home & Garden", "  electronics > Phones ", "ＴＯＹＳ", "--", None]
PRICES = [None, -1.0, 0.0, 4.99, 5.0, 19.99, 20.0, 500.0, 1e6, float("nan"), float("inf")]


def test_normalize_category_in_sql(spark: Any) -> None:
    spark.createDataFrame([(n,) for n in NAMES], "name string").createOrReplaceTempView("sql_fn_names")
    rows = spark.sql("SELECT name, normalize_category(name) AS norm FROM sql_fn_names").collect()
    assert {r["name"]: r["norm"] for r in rows} == {n: normalize_category(n) for n in NAMES}
    assert spark.sql("SELECT normalize_category('Home & Garden')").first()[0] == "home_and_garden"


def test_price_bucket_in_sql_and_as_a_native_expression_agree_with_the_rule(spark: Any) -> None:
    from pyspark.sql import functions as F

    edges = FeatureConfig().price_buckets
    df = spark.createDataFrame([(i, p) for i, p in enumerate(PRICES)], "i int, price double")
    df.createOrReplaceTempView("sql_fn_prices")
    by_sql = {r["i"]: r["b"] for r in spark.sql("SELECT i, price_bucket(price) AS b FROM sql_fn_prices").collect()}
    native = {r["i"]: r["b"] for r in df.select("i", price_bucket_column(F.col("price"), edges).alias("b")).collect()}
    expected = {i: price_bucket(p, edges) for i, p in enumerate(PRICES)}
    assert by_sql == expected == native
    assert spark.sql("SELECT price_bucket(12.5)").first()[0] == price_bucket(12.5, edges)
