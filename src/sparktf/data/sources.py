"""Reading raw events from Parquet, CSV, JSON or a Spark table, losing nothing.

Spark's readers are permissive in ways that drop data quietly: a CSV line with too
many fields is truncated, an unparsable number becomes null, a malformed JSON
line becomes a row of nulls. This module reads every value as it is (text for
CSV and JSON) and keeps the raw text of unreadable records in
``_corrupt_record``, so that :mod:`sparktf.data.validation` can quarantine each
problem with its reason instead of Spark hiding it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparktf.config import DataConfig
from sparktf.data.schema import CORRUPT_RECORD, EVENT_COLUMNS, KEY_COLUMNS
from sparktf.errors import DataError, SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["read_source", "require_event_columns"]


def read_source(spark: SparkSession, cfg: DataConfig) -> DataFrame:
    """The raw events of ``data.source = 'path'`` or ``'table'``, values as stored.

    CSV needs a header line; CSV and JSON values are read as text. Records Spark
    cannot parse keep their text in ``_corrupt_record``.

    Raises:
        DataError: the path or table cannot be read.
        SchemaError: a key column is absent from the source.
    """
    if cfg.source == "table":
        where = f"table {cfg.table!r}"
        try:
            df = spark.table(cfg.table)
        except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException, re-raised with context
            raise DataError(
                f"Cannot read {where} (data.table): {_first_line(exc)}.",
                hint="Check the table name with `SHOW TABLES` in Spark SQL, or set data.source to 'path'.",
            ) from None
    elif cfg.source == "path":
        where = f"{cfg.format} files at {cfg.path!r}"
        try:
            df = _read_path(spark, cfg.path, cfg.format)
        except SchemaError:
            raise
        except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException, re-raised with context
            raise DataError(
                f"Cannot read {where} (data.path, data.format): {_first_line(exc)}.",
                hint="Check that the path exists and data.format matches the files.",
            ) from None
    else:
        raise DataError(f"read_source() reads data.source 'path' or 'table', not {cfg.source!r}.")
    require_event_columns(df, where)
    return df


def require_event_columns(df: DataFrame, where: str) -> None:
    """Fail unless every key column is present (null values are the validator's business).

    Raises:
        SchemaError: naming the missing columns, the source and the columns it has.
    """
    present = {c.lower() for c in df.columns}
    missing = [c for c in KEY_COLUMNS if c not in present]
    if missing:
        raise SchemaError(
            f"The events in {where} have no column {', '.join(repr(c) for c in missing)}; "
            f"columns found: {', '.join(df.columns) or '(none)'}.",
            hint=f"Events need the columns {', '.join(KEY_COLUMNS)} (optional: "
            f"{', '.join(c for c in EVENT_COLUMNS if c not in KEY_COLUMNS)}); rename them in the source.",
            source=where,
            missing=missing,
        )


def _read_path(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "json":
        # primitivesAsString keeps "12.50" and 12.5 apart from parse failures, as text.
        return (
            spark.read.option("primitivesAsString", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
            .json(path)
        )
    from pyspark.sql.types import StringType, StructField, StructType

    header = spark.read.option("header", True).option("inferSchema", False).csv(path).columns
    if not header:
        raise SchemaError(f"The CSV files at {path!r} have no header line.", hint="Add a header line of column names.")
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(CORRUPT_RECORD, StringType())])
    return (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .schema(schema)
        .csv(path)
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
