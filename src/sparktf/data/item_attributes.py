"""Item attribute rules: category normalization and price buckets.

Each rule is written once as a plain Python function (what analysts call through
Spark SQL, see :mod:`sparktf.data.sql_functions`, and what the tests check) and,
for the feature pipeline's hot path, once as a native Spark expression built from
the same parameters, so no Python UDF runs per event. The tests hold the two
forms equal.

Example:
    >>> normalize_category("  Home & Garden > Outdoor Furniture ")
    'home_and_garden/outdoor_furniture'
    >>> price_bucket(12.5, (5.0, 10.0, 20.0))
    3
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

__all__ = ["UNKNOWN_BUCKET", "normalize_category", "price_bucket", "price_bucket_column"]

#: The bucket of a missing or unusable price, like index 0 for out-of-vocabulary ids.
UNKNOWN_BUCKET = 0

_LEVEL_SEPARATORS = re.compile(r"\s*(?:>|/|\|)\s*")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize_category(name: str | None) -> str | None:
    """One spelling per category: case-folded, ``&`` → ``and``, words joined by ``_``.

    Hierarchy separators (``>``, ``/``, ``|``) become ``/``; empty levels are
    dropped. Unicode is NFKC-normalized first, so full-width and composed forms
    agree. A name with nothing left (``None``, ``""``, ``"--"``) gives ``None``.
    """
    if name is None:
        return None
    text = unicodedata.normalize("NFKC", str(name)).casefold().replace("&", " and ")
    levels = []
    for level in _LEVEL_SEPARATORS.split(text):
        word = _NON_WORD.sub("_", level).strip("_")
        if word:
            levels.append(word)
    return "/".join(levels) or None


def price_bucket(price: float | None, edges: Sequence[float]) -> int:
    """The bucket of ``price`` for strictly increasing ``edges``.

    Bucket ``1`` is below ``edges[0]``, bucket ``i + 1`` is ``[edges[i-1], edges[i])``,
    and bucket ``len(edges) + 1`` is at or above the last edge. ``None``, NaN,
    infinities and negative prices give :data:`UNKNOWN_BUCKET`.
    """
    if price is None or not math.isfinite(price) or price < 0:
        return UNKNOWN_BUCKET
    return bisect.bisect_right(edges, price) + 1


def price_bucket_column(price: Column, edges: Sequence[float]) -> Column:
    """:func:`price_bucket` as a native Spark expression (no Python UDF)."""
    from pyspark.sql import functions as F

    unusable = price.isNull() | F.isnan(price) | (F.abs(price) == float("inf")) | (price < 0)
    expr = F.lit(len(edges) + 1)
    for i in reversed(range(len(edges))):
        expr = F.when(price < F.lit(float(edges[i])), F.lit(i + 1)).otherwise(expr)
    return F.when(unusable, F.lit(UNKNOWN_BUCKET)).otherwise(expr).cast("int")
