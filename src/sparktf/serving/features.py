"""What the server knows about users and items, read from the features stage's output.

``items/`` gives item attributes (for the web page and ``"attributes": true``
replies), ``seen/`` the items to leave out of a user's recommendations, and
``examples/`` each user's most recent items (the history and target of the
user's latest example: everything the user did, the same context the batch
recommendations use). All three are optional; the server works without them.

Why our own code: these are small Parquet tables read once with pyarrow into
dicts; Spark would be a heavy dependency for a web server's start-up.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sparktf.errors import DataError

__all__ = ["FeatureLookup", "load_features", "natural_key"]

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"(\d+)")
_ATTRIBUTES = ("category", "brand", "price", "price_bucket", "popularity_rank")


@dataclass(frozen=True, eq=False)
class FeatureLookup:
    """Read-only lookups over the features tables.

    Attributes:
        path: where they came from ("" when there are none).
        items: item id -> attributes (``category``, ``brand``, ``price``, ...).
        seen: user id -> the items the user interacted with in the train part.
        recent: user id -> the user's latest items, oldest first, most recent last.
    """

    path: str = ""
    items: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seen: Mapping[str, frozenset[str]] = field(default_factory=dict)
    recent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @cached_property
    def _sorted_users(self) -> list[str]:
        return sorted(set(self.recent) | set(self.seen), key=lambda u: (natural_key(u), u))

    def users(self, prefix: str = "", limit: int = 100) -> list[str]:
        """Known users (those with recent items or seen items) in natural order (``u2``
        before ``u10``, ``9`` before ``10``), filtered by prefix."""
        out: list[str] = []
        for u in self._sorted_users:
            if u.startswith(prefix):
                out.append(u)
                if len(out) == limit:
                    break
        return out

    def user_count(self, prefix: str = "") -> int:
        """How many known users start with ``prefix``."""
        if not prefix:
            return len(self._sorted_users)
        return sum(1 for u in self._sorted_users if u.startswith(prefix))

    def attributes(self, item_ids: Sequence[str]) -> list[dict[str, Any]]:
        """``{"item_id": ..., **attributes}`` per id (only the id when the item is unknown)."""
        return [{"item_id": i, **self.items.get(i, {})} for i in item_ids]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digit runs of ``text`` as numbers: ids such as ``42`` or
    ``u42`` are numbers to the people who read them, not strings."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


def load_features(path: str) -> FeatureLookup:
    """Read ``items/``, ``seen/`` and ``examples/`` under ``path`` (each optional).

    Raises:
        DataError: a table exists but lacks its columns (see docs/data-contract.md).
    """
    if not path or not os.path.isdir(path):
        return FeatureLookup()
    return FeatureLookup(
        path=path,
        items=_read_items(os.path.join(path, "items")),
        seen=_read_seen(os.path.join(path, "seen")),
        recent=_read_recent(os.path.join(path, "examples")),
    )


def _read(table_dir: str, columns: list[str]) -> Any:
    import pyarrow.dataset as ds

    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise DataError(
            f"The features table {table_dir} lacks column {missing[0]!r} (it has: {', '.join(dataset.schema.names)}).",
            hint="Rebuild the features with `sparktf prepare`, or point serve.features_path at the right folder.",
        )
    return dataset.to_table(columns=columns)


def _read_items(table_dir: str) -> dict[str, dict[str, Any]]:
    if not os.path.isdir(table_dir):
        return {}
    import pyarrow.dataset as ds

    names = ds.dataset(table_dir, format="parquet", ignore_prefixes=[".", "_"]).schema.names
    columns = ["item_id"] + [c for c in _ATTRIBUTES if c in names]
    rows = _read(table_dir, columns).to_pylist()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = str(row.pop("item_id"))
        out[item] = {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    return out


def _read_seen(table_dir: str) -> dict[str, frozenset[str]]:
    if not os.path.isdir(table_dir):
        return {}
    table = _read(table_dir, ["user_id", "items"])
    return {
        str(u): frozenset(str(i) for i in (items or []))
        for u, items in zip(table.column("user_id").to_pylist(), table.column("items").to_pylist(), strict=True)
    }


def _read_recent(table_dir: str) -> dict[str, tuple[str, ...]]:
    if not os.path.isdir(table_dir):
        return {}
    import pyarrow.dataset as ds

    has_split = (
        "split" in ds.dataset(table_dir, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"]).schema.names
    )
    table = _read(table_dir, ["user_id", "history", "target", "event_time", *(["split"] if has_split else [])])
    names = table.schema.names
    splits = table.column("split").to_pylist() if "split" in names else [None] * table.num_rows
    best: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for u, history, target, when, split in zip(
        table.column("user_id").to_pylist(),
        table.column("history").to_pylist(),
        table.column("target").to_pylist(),
        table.column("event_time").to_pylist(),
        splits,
        strict=True,
    ):
        if u is None:
            continue
        items = tuple(str(i) for i in [*(history or []), target] if i is not None)
        # The latest example wins, the test split breaking ties: the batch job's rule.
        key = (when is not None, when or 0, _SPLIT_RANK.get(str(split), 0))
        if str(u) not in best or key > best[str(u)][0]:
            best[str(u)] = (key, items)
    return {u: items for u, (_, items) in best.items()}


_SPLIT_RANK = {"test": 3, "validation": 2, "train": 1}
