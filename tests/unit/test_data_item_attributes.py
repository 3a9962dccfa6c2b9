"""Category normalization and price buckets: the Python rule and its vectorized form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparktf.config import FeatureConfig
from sparktf.data.item_attributes import UNKNOWN_BUCKET, normalize_category, price_bucket
from sparktf.data.sql_functions import price_buckets

EDGES = FeatureConfig().price_buckets


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Electronics", "electronics"),
        ("  Home & Garden ", "home_and_garden"),
        ("Home and Garden", "home_and_garden"),
        ("Electronics > Mobile Phones", "electronics/mobile_phones"),
        ("electronics/mobile-phones", "electronics/mobile_phones"),
        ("Sports|| Outdoors", "sports/outdoors"),
        ("ＴＯＹＳ", "toys"),  # full-width letters
        ("Children's", "children_s"),
        ("--", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_category(name: str | None, expected: str | None) -> None:
    assert normalize_category(name) == expected


@given(st.text(max_size=40))
def test_normalization_is_idempotent(name: str) -> None:
    once = normalize_category(name)
    assert normalize_category(once) == once


@pytest.mark.parametrize(
    ("price", "bucket"),
    [(0.0, 1), (4.99, 1), (5.0, 2), (9.99, 2), (10.0, 3), (499.99, 7), (500.0, 8), (1e9, 8)],
)
def test_price_bucket_edges(price: float, bucket: int) -> None:
    assert price_bucket(price, EDGES) == bucket


@pytest.mark.parametrize("price", [None, float("nan"), float("inf"), -0.01])
def test_unusable_prices_get_the_unknown_bucket(price: float | None) -> None:
    assert price_bucket(price, EDGES) == UNKNOWN_BUCKET == 0


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EDGES)), max_size=50))
def test_vectorized_buckets_equal_the_rule(prices: list[float]) -> None:
    got = price_buckets(np.array(prices, dtype=np.float64), EDGES)
    assert got.dtype == np.int32
    assert got.tolist() == [price_bucket(p, EDGES) for p in prices]


def test_buckets_are_monotone_in_price() -> None:
    prices = np.linspace(0, 1000, 2001)
    buckets = [price_bucket(float(p), EDGES) for p in prices]
    assert buckets == sorted(buckets) and buckets[0] == 1 and buckets[-1] == len(EDGES) + 1
    assert not math.isnan(sum(buckets))
