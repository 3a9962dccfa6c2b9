"""sparktf's functions in Spark SQL, for analysts.

:func:`register` runs on every session :func:`sparktf.spark.get_spark` makes, so
after that these work in ``spark.sql``:

=====================================  =========================================================
``normalize_category(name)``           :func:`sparktf.data.item_attributes.normalize_category`
``price_bucket(price)``                :func:`sparktf.data.item_attributes.price_bucket` with
                                       the default ``features.price_buckets`` edges
=====================================  =========================================================

Both are vectorized pandas UDFs: Arrow batches instead of one pickled row at a
time, and ``normalize_category`` works on the distinct names of each batch only
(categories repeat a lot). ``recommend(user_id, k)`` needs a trained model and an
index, so :mod:`sparktf.inference.sql` registers it (the ``recommend`` stage does,
or ``sparktf.stages.recommend.register_recommend_from_config`` in a notebook).

Example:
    >>> spark.sql("SELECT normalize_category('Home & Garden'), price_bucket(12.5)").first()  # doctest: +SKIP
    Row(normalize_category(Home & Garden)='home_and_garden', price_bucket(12.5)=4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparktf.config import FeatureConfig
from sparktf.data.item_attributes import UNKNOWN_BUCKET, normalize_category

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pyspark.sql import SparkSession
    from pyspark.sql._typing import UserDefinedFunctionLike

__all__ = ["FUNCTIONS", "price_buckets", "register"]

#: The names :func:`register` defines.
FUNCTIONS: tuple[str, ...] = ("normalize_category", "price_bucket")


def price_buckets(prices: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """:func:`~sparktf.data.item_attributes.price_bucket` over an array, as int32."""
    import numpy as np

    values = np.asarray(prices, dtype=np.float64)
    buckets = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right") + 1
    unusable = ~np.isfinite(values) | (values < 0)
    return np.where(unusable, UNKNOWN_BUCKET, buckets).astype(np.int32)


def _normalize_series(names: pd.Series) -> pd.Series:
    mapping = {name: normalize_category(name) for name in names.dropna().unique()}
    return names.map(mapping).astype(object)


def udfs() -> dict[str, UserDefinedFunctionLike]:
    """The functions of :data:`FUNCTIONS` as pandas UDFs, for DataFrame code."""
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    edges = FeatureConfig().price_buckets

    def normalize(names: pd.Series) -> pd.Series:
        return _normalize_series(names)

    def bucket(prices: pd.Series) -> pd.Series:
        return pd.Series(price_buckets(prices.to_numpy(dtype="float64", na_value=float("nan")), edges))

    # pandas_udf reads the type hints at run time; with postponed annotations they
    # are strings naming a local import it cannot resolve, so give it the classes.
    for fn in (normalize, bucket):
        fn.__annotations__ = {name: pd.Series for name in fn.__annotations__}
    return {
        "normalize_category": pandas_udf(normalize, "string"),  # type: ignore[call-overload]
        "price_bucket": pandas_udf(bucket, "int"),  # type: ignore[call-overload]
    }


def register(spark: SparkSession) -> None:
    """Define :data:`FUNCTIONS` as temporary functions of ``spark``'s SQL."""
    for name, fn in udfs().items():
        spark.udf.register(name, fn)
