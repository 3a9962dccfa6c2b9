"""Validation that loses nothing: every input row ends in ``data/events`` or in
``data/quarantine`` with a reason, and the counts add up.

Schema-enforcing readers and expectation libraries either fail a whole batch or
drop and null-out bad values; neither tells an analyst *which* rows were bad and
why while keeping the good ones. This module gives each input row exactly one
outcome, decided by the first rule it breaks, in this order:

===========================  ==============================================================
reason                       rule
===========================  ==============================================================
``malformed_record``         Spark could not parse the CSV/JSON record (its text is kept)
``missing_key``              ``event_time``, ``user_id``, ``item_id`` or ``event_type`` is
                             null or blank
``reserved_item_id``         ``item_id`` is the session-break entry of the histories
                             (``data.schema.SESSION_BREAK``), which no item may be
``bad_timestamp``            ``event_time`` is not a timestamp (ISO-8601 text, a Spark
                             timestamp/date, or epoch seconds as a number or digits)
``timestamp_out_of_range``   outside ``[data.min_event_time, data.max_event_time)``
``unknown_event_type``       not one of ``data.event_types`` (case-sensitive)
``bad_price``                ``price`` is present but not a finite number
``negative_price``           ``price < 0``
``duplicate``                an exact copy (all event columns equal) of a row kept once
===========================  ==============================================================

Rows are grouped by their full raw content first, so duplicates cost one
aggregation and each distinct record is parsed once; the multiplicity is
expanded again when the quarantine is written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sparktf.config import DataConfig
from sparktf.data import storage
from sparktf.data.schema import CORRUPT_RECORD, EVENT_COLUMNS, EVENT_FIELDS, KEY_COLUMNS, SESSION_BREAK
from sparktf.errors import DataError, DataValidationError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

__all__ = [
    "QUARANTINE_COLUMNS",
    "REASONS",
    "ValidationReport",
    "classify",
    "good_events",
    "quarantine_rows",
    "validate_events",
]

REASONS: tuple[str, ...] = (
    "malformed_record",
    "missing_key",
    "reserved_item_id",
    "bad_timestamp",
    "timestamp_out_of_range",
    "unknown_event_type",
    "bad_price",
    "negative_price",
    "duplicate",
)

#: The quarantine's columns: every event column as its raw text, then why.
QUARANTINE_COLUMNS: tuple[str, ...] = (*EVENT_COLUMNS, "raw_record", "reason", "detail")

# Epoch seconds beyond this are no plausible event time (year ~5138); they map to a
# sentinel far outside any allowed range instead of overflowing the conversion.
_MAX_EPOCH_S = 1e11
_COUNT = "_n"


@dataclass(frozen=True)
class ValidationReport:
    """What validation did with the input rows.

    Attributes:
        input_rows: rows read.
        good_rows: rows written to the events table.
        quarantined: rows quarantined per reason (every reason listed, zeros included).
        ignored_columns: input columns that are not event columns (not carried over).
        events_path, quarantine_path: where the two tables are.
        max_bad_fraction: the limit the run was checked against.
    """

    input_rows: int
    good_rows: int
    quarantined: dict[str, int]
    ignored_columns: tuple[str, ...] = ()
    events_path: str = ""
    quarantine_path: str = ""
    max_bad_fraction: float = 1.0
    passed: bool = field(default=True)

    @property
    def quarantined_rows(self) -> int:
        return sum(self.quarantined.values())

    @property
    def bad_fraction(self) -> float:
        return self.quarantined_rows / self.input_rows if self.input_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ignored_columns"] = list(self.ignored_columns)
        d["quarantined_rows"] = self.quarantined_rows
        d["bad_fraction"] = self.bad_fraction
        return d


# --------------------------------------------------------------------------- rules


def _numeric(dtype: DataType) -> bool:
    from pyspark.sql.types import NumericType

    return isinstance(dtype, NumericType)


def _text(c: Column, dtype: DataType) -> Column:
    """The raw value as text (what the quarantine shows)."""
    from pyspark.sql.types import StringType

    return c if isinstance(dtype, StringType) else c.cast("string")


def _missing(c: Column, dtype: DataType) -> Column:
    """Null, or blank text. Typed values are only checked for null: formatting every
    timestamp or number as text just to test it would cost a pass of its own."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    return c.isNull() | (F.trim(c) == "") if isinstance(dtype, StringType) else c.isNull()


def _epoch(x: Column) -> Column:
    from pyspark.sql import functions as F

    far_future = F.lit("9999-12-31 23:59:59").cast("timestamp")
    far_past = F.lit("0001-01-01 00:00:00").cast("timestamp")
    return (
        F.when(F.isnan(x), F.lit(None).cast("timestamp"))
        .when(F.abs(x) < _MAX_EPOCH_S, F.timestamp_seconds(x))
        .when(x > 0, far_future)
        .otherwise(far_past)
    )


def _parse_time(c: Column, dtype: DataType) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    if isinstance(dtype, TimestampType):
        return c
    if isinstance(dtype, TimestampNTZType | DateType):
        return c.cast("timestamp")
    if _numeric(dtype):
        return _epoch(c.cast("double"))
    s = F.trim(_text(c, dtype))
    # Digits are epoch seconds: Spark would otherwise read "2026" as a year.
    return F.when(s.rlike(r"^[+-]?[0-9]+(\.[0-9]+)?$"), _epoch(s.try_cast("double"))).otherwise(F.try_to_timestamp(s))


def _parse_price(c: Column, dtype: DataType) -> Column:
    from pyspark.sql import functions as F

    if _numeric(dtype):
        return c.cast("double")
    return F.trim(_text(c, dtype)).try_cast("double")


def _column(raw: DataFrame, name: str) -> tuple[Column, DataType]:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    for f in raw.schema.fields:
        if f.name.lower() == name:
            return F.col(f"`{f.name}`"), f.dataType
    return F.lit(None).cast("string"), StringType()


def classify(raw: DataFrame, cfg: DataConfig) -> DataFrame:
    """Group identical raw rows and give each distinct row its parsed columns and verdict.

    Returns:
        One row per distinct raw record: the parsed event columns, their raw text
        (``raw_<column>``), ``raw_record``, ``reason`` and ``detail`` (null when the
        record is good) and ``_n``, how many input rows had exactly this content.
    """
    from pyspark.sql import functions as F

    cols = {name: _column(raw, name) for name in EVENT_COLUMNS}
    has_corrupt = any(f.name == CORRUPT_RECORD for f in raw.schema.fields)
    grouped = raw.select(
        *[c.alias(name) for name, (c, _) in cols.items()],
        (F.col(CORRUPT_RECORD) if has_corrupt else F.lit(None).cast("string")).alias("raw_record"),
    )
    grouped = grouped.groupBy(*EVENT_COLUMNS, "raw_record").agg(F.count(F.lit(1)).alias(_COUNT))

    g = {name: F.col(name) for name in EVENT_COLUMNS}
    types = {name: dtype for name, (_, dtype) in cols.items()}
    text = {name: _text(g[name], types[name]) for name in EVENT_COLUMNS}
    ts = _parse_time(g["event_time"], types["event_time"])
    price = _parse_price(g["price"], types["price"])
    lo = F.lit(cfg.min_event_time).cast("timestamp")
    hi = F.lit(cfg.max_event_time).cast("timestamp")
    absent = {k: _missing(g[k], types[k]) for k in (*KEY_COLUMNS, "price")}
    price_given = ~absent["price"]
    allowed = ", ".join(cfg.event_types)

    def quoted(c: Column) -> Column:
        return F.concat(F.lit("'"), F.substring(c, 1, 200), F.lit("'"))

    rules: list[tuple[str, Column, Column]] = [
        (
            "malformed_record",
            F.col("raw_record").isNotNull(),
            F.concat(F.lit("Spark could not parse the record "), quoted(F.col("raw_record"))),
        ),
        (
            "missing_key",
            functools.reduce(operator.or_, [absent[k] for k in KEY_COLUMNS]),
            F.concat(
                F.concat_ws(", ", *[F.when(absent[k], F.lit(k)) for k in KEY_COLUMNS]), F.lit(" is null or blank")
            ),
        ),
        (
            "reserved_item_id",
            text["item_id"] == F.lit(SESSION_BREAK),
            F.lit(
                f"item_id '{SESSION_BREAK}' is reserved: it marks where a session ends in the histories; "
                "rename the item"
            ),
        ),
        (
            "bad_timestamp",
            ts.isNull(),
            F.concat(
                F.lit("event_time "),
                quoted(text["event_time"]),
                F.lit(" is not a timestamp; use ISO-8601 such as 2026-01-31T12:00:00Z, or epoch seconds"),
            ),
        ),
        (
            "timestamp_out_of_range",
            (ts < lo) | (ts >= hi),
            F.concat(
                F.lit("event_time "),
                quoted(text["event_time"]),
                F.lit(
                    f" is outside [{cfg.min_event_time}, {cfg.max_event_time}) "
                    "(data.min_event_time, data.max_event_time)"
                ),
            ),
        ),
        (
            "unknown_event_type",
            ~g["event_type"].cast("string").isin(list(cfg.event_types)),
            F.concat(
                F.lit("event_type "),
                quoted(text["event_type"]),
                F.lit(f" is not one of {allowed} (data.event_types)"),
            ),
        ),
        (
            "bad_price",
            price_given & (price.isNull() | F.isnan(price) | (F.abs(price) == float("inf"))),
            F.concat(F.lit("price "), quoted(text["price"]), F.lit(" is not a finite number")),
        ),
        (
            "negative_price",
            price_given & (price < 0),
            F.concat(F.lit("price "), quoted(text["price"]), F.lit(" is negative")),
        ),
    ]
    reason = F.lit(None).cast("string")
    detail = F.lit(None).cast("string")
    for name, broken, why in reversed(rules):  # the first rule broken wins
        reason = F.when(broken, F.lit(name)).otherwise(reason)
        detail = F.when(broken, why).otherwise(detail)

    return grouped.select(
        ts.alias("event_time"),
        *[text[k].alias(k) for k in ("user_id", "item_id", "event_type", "session_id", "category", "brand")],
        price.alias("price"),
        text["sale_id"].alias("sale_id"),
        *[text[k].alias(f"raw_{k}") for k in EVENT_COLUMNS],
        "raw_record",
        reason.alias("reason"),
        detail.alias("detail"),
        _COUNT,
    )


def good_events(classified: DataFrame) -> DataFrame:
    """The good rows of :func:`classify`'s output, once each, in the events schema."""
    from pyspark.sql import functions as F

    return classified.where(F.col("reason").isNull()).select(
        *[F.col(f.name).cast(f.ddl).alias(f.name) for f in EVENT_FIELDS]
    )


def quarantine_rows(classified: DataFrame) -> DataFrame:
    """Every bad input row of :func:`classify`'s output, with its multiplicity restored.

    A bad record that occurred ``n`` times gives ``n`` rows; a good record that
    occurred ``n`` times gives ``n - 1`` ``duplicate`` rows (one copy is kept).
    """
    from pyspark.sql import functions as F

    good = F.col("reason").isNull()
    copies = F.when(good, F.col(_COUNT) - 1).otherwise(F.col(_COUNT))
    dup_detail = F.concat(
        F.lit("exact duplicate: "), F.col(_COUNT).cast("string"), F.lit(" identical rows, one kept in data/events")
    )
    return (
        classified.where(copies > 0)
        .select(
            *[F.col(f"raw_{k}").alias(k) for k in EVENT_COLUMNS],
            "raw_record",
            F.when(good, F.lit("duplicate")).otherwise(F.col("reason")).alias("reason"),
            F.when(good, dup_detail).otherwise(F.col("detail")).alias("detail"),
            F.explode(F.sequence(F.lit(1), copies.cast("int"))).alias("_copy"),
        )
        .drop("_copy")
    )


# --------------------------------------------------------------------------- the stage's work


@contextlib.contextmanager
def _source_read_errors(raw: DataFrame) -> Iterator[None]:
    """Turn Spark's failure to read a source file into a :class:`DataError` naming the file."""
    from sparktf.data.sources import read_error

    try:
        yield
    except Exception as exc:
        try:
            files = raw.inputFiles()
        except Exception:  # noqa: BLE001 - a source that is no file listing (a table, a DataFrame)
            files = []
        where = f"the input ({len(files)} file(s))" if files else "the input"
        err = read_error(exc, where)
        if err is None:
            raise
        raise err from exc


def validate_events(
    spark: SparkSession,
    raw: DataFrame,
    cfg: DataConfig,
    *,
    events_path: str,
    quarantine_path: str,
    report_path: str | None = None,
) -> ValidationReport:
    """Validate ``raw`` into the events and quarantine tables, and check the bad fraction.

    The quarantine is always kept, so a failed run can be inspected; when the bad
    fraction is too high the events table is removed, so no later stage reads it.

    Args:
        spark: the session.
        raw: the raw events, any column types (see :func:`classify`).
        cfg: the ``[data]`` section.
        events_path, quarantine_path: where to write the two Parquet tables.
        report_path: where to write the report as JSON, if anywhere.

    Raises:
        DataError: the input has no rows.
        DataValidationError: more than ``data.max_bad_fraction`` of the rows are bad.
    """

    ignored = tuple(c for c in raw.columns if c.lower() not in EVENT_COLUMNS and c != CORRUPT_RECORD)
    # Two passes over the input (one per output) cost less than caching the grouped
    # rows; the counts then come from the written tables, which is cheap.
    classified = classify(raw, cfg)
    # Spark reads the source only now, so a file it cannot read fails here.
    with _source_read_errors(raw):
        quarantine_rows(classified).write.mode("overwrite").parquet(quarantine_path)
        good_events(classified).write.mode("overwrite").parquet(events_path)
    counts = {r: 0 for r in REASONS}
    for row in spark.read.parquet(quarantine_path).groupBy("reason").count().collect():
        counts[row["reason"]] = int(row["count"])
    good = spark.read.parquet(events_path).count()
    total = good + sum(counts.values())
    report = ValidationReport(
        input_rows=total,
        good_rows=good,
        quarantined=counts,
        ignored_columns=ignored,
        events_path=events_path,
        quarantine_path=quarantine_path,
        max_bad_fraction=cfg.max_bad_fraction,
        passed=total > 0 and (total - good) / total <= cfg.max_bad_fraction,
    )
    if total == 0:
        raise DataError(
            "The input has no events: 0 rows were read, so there is nothing to validate.",
            hint="Check data.source and data.path (or the generator settings) and rerun `sparktf generate`.",
        )
    if not report.passed:
        storage.delete(spark, events_path)  # never leave good rows of a failed run for the next stage
    if report_path:
        storage.write_text(spark, report_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.passed:
        worst = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)
        raise DataValidationError(
            f"{report.quarantined_rows:,} of {total:,} input rows ({report.bad_fraction:.1%}) failed validation, "
            f"more than data.max_bad_fraction = {cfg.max_bad_fraction}: {worst}. "
            f"They are kept in {quarantine_path} with a reason and detail per row; the events table was removed.",
            hint="Look at the quarantine (e.g. spark.read.parquet(path).groupBy('reason', 'detail').count()), "
            "fix the source, or raise data.max_bad_fraction if these rows are expected.",
            quarantine=quarantine_path,
            counts=counts,
        )
    return report
