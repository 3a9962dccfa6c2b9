"""Reading raw events from Parquet, CSV, JSON or a Spark table, losing nothing.

Spark's readers are permissive in ways that drop data quietly: a CSV line with too
many fields is truncated, an unparsable number becomes null, a malformed JSON
line becomes a row of nulls. This module reads every value as it is (text for
CSV and JSON) and keeps the raw text of unreadable records in
``_corrupt_record``, so that :mod:`sparktf.data.validation` can quarantine each
problem with its reason instead of Spark hiding it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sparktf.config import DataConfig
from sparktf.data.schema import CORRUPT_RECORD, EVENT_COLUMNS, KEY_COLUMNS
from sparktf.errors import DataError, SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, DataFrameReader, SparkSession

__all__ = ["read_error", "read_source", "require_event_columns"]


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
        except DataError:  # ours, already naming the file and what to do
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
        df = spark.read.parquet(path)
        _require_parquet_files(spark, df.inputFiles(), path)
        return df
    if fmt == "json":
        return _read_json(spark, path)
    return _read_csv(spark, path)


def _read_json(spark: SparkSession, path: str) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    def reader() -> DataFrameReader:
        # primitivesAsString keeps "12.50" and 12.5 apart from parse failures, as text.
        return (
            spark.read.option("primitivesAsString", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        )

    df = reader().json(path)
    if not [c for c in df.columns if c != CORRUPT_RECORD]:
        # Every record is malformed (or there are none): inference found no column but
        # the corrupt-record one. Read again with the event columns as text, so each
        # record reaches validation and is quarantined with its text, instead of the
        # source failing as if it lacked the key columns.
        schema = StructType([StructField(c, StringType()) for c in (*EVENT_COLUMNS, CORRUPT_RECORD)])
        df = reader().schema(schema).json(path)
    return df


def _read_csv(spark: SparkSession, path: str) -> DataFrame:
    """Each CSV file read by its own header line.

    Spark applies one schema, taken from the first file's header, to every file and
    matches columns by position, so a file whose header lists the same columns in
    another order would have its values land in the wrong columns. Files are
    grouped by header, each group is read with its own columns (``enforceSchema``
    off, so Spark checks every file's header against them by name), and the groups
    are combined by column name.
    """
    from functools import reduce

    probe = spark.read.schema("_sparktf_probe string").csv(path)
    files = probe.inputFiles()
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(_first_text_line(spark, f), []).append(f)
    if not files or len(groups) == 1:
        return _read_csv_group(spark, [path], path)
    # Listing the files by name drops Spark's partition discovery unless told where the table starts.
    base = path if len(probe.columns) > 1 else None
    frames = [_read_csv_group(spark, group, path, base) for _header, group in sorted(groups.items())]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _read_csv_group(spark: SparkSession, paths: list[str], where: str, base: str | None = None) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    def reader() -> DataFrameReader:
        r = spark.read.option("header", True).option("inferSchema", False)
        return r.option("basePath", base) if base else r

    # Spark's own reading of the header (quotes, duplicate names) gives the columns.
    header = [c for c in reader().csv(paths[0]).columns if c not in _partition_columns(spark, where, base)]
    if not header:
        shown = paths[0] if paths[0] != where else where
        raise SchemaError(f"The CSV files at {shown!r} have no header line.", hint="Add a header line of column names.")
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(CORRUPT_RECORD, StringType())])
    return (
        reader()
        .option("enforceSchema", False)  # a file whose header differs fails, naming the file, instead of mixing
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .schema(schema)
        .csv(paths)
    )


def _partition_columns(spark: SparkSession, path: str, base: str | None) -> list[str]:
    if not base:
        return []
    return [c for c in spark.read.schema("_sparktf_probe string").csv(path).columns if c != "_sparktf_probe"]


def _hadoop_file(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm  # the Hadoop FileSystem has no Python API
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def _first_text_line(spark: SparkSession, path: str) -> str:
    """The first line of a (possibly compressed) text file, as Spark would decompress it."""
    jvm: Any = spark.sparkContext._jvm
    fs, p = _hadoop_file(spark, path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()
    ).getCodec(p)
    stream = fs.open(p)
    try:
        source = codec.createInputStream(stream) if codec is not None else stream
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(source, "UTF-8"))
        line = reader.readLine()
    finally:
        stream.close()
    return str(line) if line is not None else ""


_PARQUET_MAGIC = b"PAR1"


def _read_bytes(spark: SparkSession, fs: Any, p: Any, offsets: list[int], n: int) -> list[bytes]:
    """``n`` bytes at each offset of a Hadoop file."""
    io: Any = spark.sparkContext._jvm.org.apache.commons.io.IOUtils  # type: ignore[union-attr]
    out = []
    stream = fs.open(p)
    try:
        for offset in offsets:
            stream.seek(offset)
            out.append(bytes(io.toByteArray(stream, n)))  # py4j returns a Java byte[] as bytes
    finally:
        stream.close()
    return out


def _require_parquet_files(spark: SparkSession, files: list[str], path: str) -> None:
    """Fail, naming the file, when a file Spark would read as Parquet is not one.

    Spark reads the footer of one file to get the schema, so another file of another
    format (a CSV left among the part files) would otherwise fail only when the data
    is read, deep inside a write.
    """
    for f in files:
        fs, p = _hadoop_file(spark, f)
        size = int(fs.getFileStatus(p).getLen())
        head = tail = b""
        if size >= 2 * len(_PARQUET_MAGIC):
            head, tail = _read_bytes(spark, fs, p, [0, size - len(_PARQUET_MAGIC)], len(_PARQUET_MAGIC))
        if head != _PARQUET_MAGIC or tail != _PARQUET_MAGIC:
            what = (
                "is empty"
                if size == 0
                else f"has {size:,} bytes, too few"
                if size < 8
                else (f"starts with {head!r} and ends with {tail!r}")
            )
            raise DataError(
                f"{f} is not a Parquet file ({what}; Parquet files start and end with {_PARQUET_MAGIC!r}), "
                f"but it is among the files read from {path!r} with data.format = 'parquet'.",
                hint="Move files of other formats out of the directory (or delete a partly written file), "
                "or set data.format to the files' format.",
                file=f,
                path=path,
            )


_FILE_IN_ERROR = re.compile(r"(?:reading file|CSV file:?)\s+(\S+?)\.?(?:\s|$)")


def read_error(exc: BaseException, where: str) -> DataError | None:
    """The :class:`DataError` for a Spark failure to read a source file, or ``None`` if ``exc`` is not one.

    Spark reads lazily, so a file it cannot read fails the first action on the
    data (in validation, the write of the quarantine), wrapped in a long JVM trace.
    This picks out the file and the cause.
    """
    text = str(exc)
    if "FAILED_READ_FILE" not in text and "CSV header does not conform" not in text:
        return None
    m = _FILE_IN_ERROR.search(text)
    file = m.group(1) if m else None
    cause = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Caused by:") or "does not conform to the schema" in line:
            cause = line.removeprefix("Caused by:").strip()
    header = "CSV header does not conform" in text
    hint = (
        "Every CSV file needs the same column names (the order may differ); fix or move the file."
        if header
        else "Check that the file is complete and in data.format; move files of other formats out of the directory."
    )
    return DataError(
        f"Spark could not read {file or 'a file'} of {where}" + (f": {cause.rstrip('.')}." if cause else "."),
        hint=hint,
        file=file,
        source=where,
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
