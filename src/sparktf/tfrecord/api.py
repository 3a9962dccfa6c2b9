"""Helpers that hide the Python data source API's rough edges.

PySpark's ``DataFrameWriter.partitionBy`` and the default save mode do not reach a
Python data source (Spark rejects them before calling it), so
:func:`write_tfrecord` takes ``partition_by`` and every save mode and does the
right thing; :func:`read_tfrecord` is its counterpart.

Why our own code: two call sites are clearer than remembering the three rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from sparktf.errors import TFRecordError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["read_tfrecord", "write_tfrecord"]

SaveMode = Literal["overwrite", "append", "error", "errorifexists", "ignore"]


def write_tfrecord(
    df: DataFrame,
    path: str,
    *,
    record_type: str = "Example",
    codec: str = "none",
    partition_by: Sequence[str] = (),
    mode: SaveMode = "overwrite",
    compression_level: int = 6,
) -> None:
    """Write ``df`` as TFRecord files under ``path``.

    Args:
        df: the rows; column types as in :mod:`sparktf.tfrecord.schema`.
        path: a directory (local, ``file://``, ``hdfs://``, ``s3a://``, ``gs://``).
        record_type: ``Example``, ``SequenceExample`` or ``ByteArray``.
        codec: ``none`` or ``gzip``.
        compression_level: gzip's zlib level, 0 to 9 (6: zlib's and TensorFlow's default).
        partition_by: columns to write as ``col=value/`` directories.
        mode: ``overwrite``, ``append``, ``error``/``errorifexists`` (fail if
            ``path`` has files) or ``ignore`` (do nothing if it has).

    Raises:
        SchemaError: a column cannot be stored (checked before anything is written).
        TFRecordError: ``mode`` is ``error`` and ``path`` already holds data.

    Example:
        >>> write_tfrecord(df, "/tmp/out", partition_by=["split"], codec="gzip")  # doctest: +SKIP
    """
    from sparktf.tfrecord import files
    from sparktf.tfrecord.datasource import WriteOptions, check_writable, register

    mode_l = mode.lower()
    if mode_l not in ("overwrite", "append", "error", "errorifexists", "ignore"):
        raise TFRecordError(
            f"Save mode {mode!r} is not supported; expected overwrite, append, error, errorifexists or ignore."
        )
    options = {
        "path": path,
        "recordType": record_type,
        "codec": codec,
        "partitionBy": ",".join(partition_by),
        "compressionLevel": str(compression_level),
    }
    # Checked here too so that the error is ours, not a Py4J wrapper around it.
    check_writable(df.schema, WriteOptions.parse(options))
    if mode_l in ("error", "errorifexists", "ignore") and _has_data(path, files):
        if mode_l == "ignore":
            return
        raise TFRecordError(
            f"Path {path!r} already holds data and mode is {mode!r}.",
            hint="Use mode='overwrite' to replace it or mode='append' to add to it.",
            path=path,
        )
    register(df.sparkSession)
    writer = df.write.format("tfrecord").mode("append" if mode_l == "append" else "overwrite")
    for key, value in options.items():
        if key != "path" and value:
            writer = writer.option(key, value)
    writer.save(path)


def _has_data(path: str, files: object) -> bool:
    import pyarrow.fs as pafs

    from sparktf.tfrecord.files import filesystem

    fs, root = filesystem(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return False
    if info.type == pafs.FileType.File:
        return True
    # Staging left by a killed write is no data: it must not make mode='ignore' skip the write.
    return any(e.base_name != "_temporary" for e in fs.get_file_info(pafs.FileSelector(root)))


def read_tfrecord(
    spark: SparkSession,
    path: str,
    *,
    schema: StructType | str | None = None,
    record_type: str = "Example",
    mode: str = "FAILFAST",
) -> DataFrame:
    """Read TFRecord files (with partition discovery) as a DataFrame.

    Args:
        spark: the session; the data source is registered on it if needed.
        path: a file or a directory.
        schema: the columns to read; inferred from a sample when ``None``.
        record_type: ``Example``, ``SequenceExample`` or ``ByteArray``.
        mode: ``FAILFAST``, ``DROPMALFORMED`` or ``PERMISSIVE``.
    """
    from sparktf.tfrecord.datasource import register

    register(spark)
    reader = spark.read.format("tfrecord").option("recordType", record_type).option("mode", mode)
    if schema is not None:
        reader = reader.schema(schema)
    return reader.load(path)
