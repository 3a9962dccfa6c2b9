"""Pipeline stage ``tfrecords``: the training sets as TFRecord files.

Reads ``data/features/examples`` (Parquet, partitioned by ``split``) and writes
``tfrecords/{train,validation,test}/part-*.tfrecord[.gz]`` with the columns of
``examples`` except ``split`` and ``event_time``, plus ``tfrecords/schema.json``
(the Spark schema, which :func:`sparktf.tfrecord.tfrecord_dataset` turns into a
parse spec). See docs/data-contract.md.

Why our own code: this is the glue between the contract's two tables; the work is
done by the ``tfrecord`` data source.
"""

from __future__ import annotations

from typing import Any

from sparktf.config import Config
from sparktf.errors import DataError, SchemaError

__all__ = ["EXAMPLE_COLUMNS", "SPLITS", "write_training_sets"]

SPLITS = ("train", "validation", "test")
EXAMPLE_COLUMNS = (
    "user_id",
    "history",
    "history_len",
    "target",
    "target_category",
    "target_brand",
    "target_price_bucket",
    "user_activity",
)
_NOT_WRITTEN = ("split", "event_time")


def write_training_sets(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Write the train, validation and test sets as TFRecords.

    Args:
        cfg: the run's configuration (``[tfrecord]`` codec and files per split).
        context: outputs of earlier stages (unused: everything comes from the workdir).

    Returns:
        ``{"path", "schema", "codec", "rows": {split: count}, "files": {split: count}}``.

    Raises:
        DataError: ``data/features/examples`` is missing or has split values other
            than train, validation and test.
        SchemaError: a contract column is missing.
    """
    from pyspark.sql import functions as F

    from sparktf.spark import get_spark
    from sparktf.tfrecord import files as tfr_files
    from sparktf.tfrecord.api import write_tfrecord

    spark = get_spark(cfg.spark)
    source = cfg.paths.join("data", "features", "examples")
    try:
        df = spark.read.parquet(source)
    except Exception as exc:  # noqa: BLE001 - Spark raises AnalysisException for a missing path
        raise DataError(
            f"Cannot read the training examples at {source}: {str(exc).splitlines()[0]}.",
            hint="Run the `features` stage first (sparktf prepare).",
            path=source,
        ) from None
    missing = [c for c in (*EXAMPLE_COLUMNS, "split") if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{source} lacks the column(s) {', '.join(missing)} of docs/data-contract.md (it has {', '.join(df.columns)}).",
            path=source,
        )
    rows = {r["split"]: int(r["count"]) for r in df.groupBy("split").count().collect()}
    unknown = sorted(str(s) for s in rows if s not in SPLITS)
    if unknown:
        raise DataError(
            f"{source} has split value(s) {unknown} ({sum(rows[s] for s in rows if s not in SPLITS)} rows); "
            f"expected only {', '.join(SPLITS)}, and those rows would not be written.",
            path=source,
        )
    columns = [c for c in df.columns if c not in _NOT_WRITTEN]
    out = cfg.paths.tfrecords
    file_counts = {}
    for split in SPLITS:
        part = df.where(F.col("split") == split).select(*columns)
        if cfg.tfrecord.files_per_split:
            part = part.repartition(cfg.tfrecord.files_per_split)
        target = f"{out}/{split}"
        write_tfrecord(part, target, codec=cfg.tfrecord.codec, mode="overwrite")
        found, _ = tfr_files.list_files(target)
        file_counts[split] = len(found)
    schema_path = f"{out}/schema.json"
    fs, inner = tfr_files.filesystem(schema_path)
    with fs.open_output_stream(inner, compression=None) as fh:
        fh.write(df.select(*columns).schema.json().encode("utf-8"))
    return {
        "path": out,
        "schema": schema_path,
        "codec": cfg.tfrecord.codec,
        "rows": {s: rows.get(s, 0) for s in SPLITS},
        "files": file_counts,
    }
