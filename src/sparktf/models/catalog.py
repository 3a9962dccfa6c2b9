"""The item catalogue and user vocabulary a model is built over.

Read from the features stage's output (``vocab/items``, ``vocab/users``, ``items``)
with pyarrow on the driver or a worker; no Spark is needed. Vocabulary order is
descending train frequency, so index ``i`` of :attr:`Catalog.item_ids` is the
item with vocabulary index ``i + 1`` (0 is out-of-vocabulary in the data layer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparktf.errors import DataError

__all__ = ["Catalog"]


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items (with features) and users known at training time.

    Attributes:
        item_ids: [num_items] raw item ids in vocabulary order.
        item_counts: [num_items] train-part interaction counts.
        category, brand: [num_items] item attributes ("" when unknown).
        price_bucket: [num_items] int bucket index.
        user_ids: [num_users] raw user ids in vocabulary order.
    """

    item_ids: np.ndarray
    item_counts: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price_bucket: np.ndarray
    user_ids: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name in ("item_counts", "category", "brand", "price_bucket"):
            if len(getattr(self, name)) != n:
                raise DataError(
                    f"Catalog.{name} has {len(getattr(self, name))} entries but there are {n} items.",
                    hint="Rebuild the features with `sparktf prepare`.",
                )
        if n == 0:
            raise DataError(
                "The item vocabulary is empty.", hint="Check the features stage's output and min_item_count."
            )
        if len(set(self.item_ids.tolist())) != n:
            raise DataError(
                "The item vocabulary has duplicate ids.", hint="Rebuild the features with `sparktf prepare`."
            )

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def sampling_probability(self) -> np.ndarray:
        """[num_items] probability that an item is a positive in a random train example
        (the logQ correction of in-batch softmax)."""
        counts = self.item_counts.astype(np.float64) + 1.0
        prob: np.ndarray = (counts / counts.sum()).astype(np.float32)
        return prob

    def categories(self) -> list[str]:
        return sorted({str(c) for c in self.category.tolist() if c})

    def brands(self) -> list[str]:
        return sorted({str(b) for b in self.brand.tolist() if b})

    def num_price_buckets(self) -> int:
        return int(self.price_bucket.max()) + 1 if len(self.price_bucket) else 1

    @classmethod
    def from_arrays(
        cls,
        item_ids: list[str],
        *,
        item_counts: list[int] | None = None,
        category: list[str] | None = None,
        brand: list[str] | None = None,
        price_bucket: list[int] | None = None,
        user_ids: list[str] | None = None,
    ) -> Catalog:
        n = len(item_ids)
        return cls(
            item_ids=np.asarray(item_ids, dtype=object),
            item_counts=np.asarray(item_counts if item_counts is not None else [1] * n, dtype=np.int64),
            category=np.asarray(category if category is not None else [""] * n, dtype=object),
            brand=np.asarray(brand if brand is not None else [""] * n, dtype=object),
            price_bucket=np.asarray(price_bucket if price_bucket is not None else [0] * n, dtype=np.int64),
            user_ids=np.asarray(user_ids or [], dtype=object),
        )

    @classmethod
    def from_features(cls, features_dir: str) -> Catalog:
        """Load from ``<features_dir>/{vocab/items,vocab/users,items}`` (Parquet)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        def table(sub: str) -> Any:
            path = os.path.join(features_dir, sub)
            if not os.path.exists(path):
                raise DataError(f"{path} does not exist.", hint="Run `sparktf prepare` (the features stage) first.")
            return ds.dataset(path, format="parquet", exclude_invalid_files=True).to_table()

        vocab = table("vocab/items").sort_by("index")
        users = table("vocab/users").sort_by("index")
        items = table("items")
        ids = vocab.column("item_id").to_pylist()
        attrs = {r["item_id"]: r for r in items.select(["item_id", "category", "brand", "price_bucket"]).to_pylist()}
        missing = [i for i in ids if i not in attrs]
        if missing:
            raise DataError(
                f"{len(missing)} vocabulary items have no row in {features_dir}/items (first: {missing[0]!r}).",
                hint="Rebuild the features with `sparktf prepare`.",
            )
        return cls(
            item_ids=np.asarray(ids, dtype=object),
            item_counts=np.asarray(pc.fill_null(vocab.column("count"), 0).to_pylist(), dtype=np.int64),
            category=np.asarray([attrs[i]["category"] or "" for i in ids], dtype=object),
            brand=np.asarray([attrs[i]["brand"] or "" for i in ids], dtype=object),
            price_bucket=np.asarray([attrs[i]["price_bucket"] or 0 for i in ids], dtype=np.int64),
            user_ids=np.asarray(users.column("user_id").to_pylist(), dtype=object),
        )
