"""Small files and directory facts on the workdir's file system, local or remote.

The workdir may be ``hdfs://`` or ``s3a://`` (see the README), where Python's
``open`` and ``os`` cannot reach. Spark's Hadoop ``FileSystem`` can, so the few
non-table files the data layer writes (``stats.json``, ``validation.json``) and
the fingerprints of its inputs go through it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["delete", "exists", "fingerprint", "write_text"]


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm  # the Hadoop FileSystem has no Python API
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, replacing it."""
    fs, p = _fs(spark, path)
    out = fs.create(p, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def exists(spark: SparkSession, path: str) -> bool:
    fs, p = _fs(spark, path)
    return bool(fs.exists(p))


def delete(spark: SparkSession, path: str) -> None:
    """Remove ``path`` and everything under it, if it exists."""
    fs, p = _fs(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


def fingerprint(spark: SparkSession, path: str) -> str:
    """A short hash of the data files under ``path`` (relative names and sizes).

    Spark names part files with a fresh id on every write, so the fingerprint tells
    one write of a table from another without reading the data.
    """
    fs, p = _fs(spark, path)
    root = str(fs.makeQualified(p).toString()).rstrip("/")
    it = fs.listFiles(p, True)
    entries = []
    while it.hasNext():
        status = it.next()
        name = str(status.getPath().toString())
        rel = name[len(root) :].lstrip("/")
        if not any(part.startswith(("_", ".")) for part in rel.split("/")):
            entries.append(f"{rel}\t{status.getLen()}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]
