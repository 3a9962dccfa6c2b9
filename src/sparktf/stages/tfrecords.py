"""Stage 4, ``tfrecords``: the training sets as TFRecord files.

Reads ``data/features/examples`` (Parquet, partitioned by ``split``) and writes
``tfrecords/{train,validation,test}/part-*.tfrecord[.gz]`` with the
:data:`~sparktf.data.schema.TRAINING_COLUMNS`, plus ``tfrecords/schema.json`` (the
Spark schema, which :func:`sparktf.tfrecord.tfrecord_dataset` turns into a parse
spec). The work is done by the ``tfrecord`` data source.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparktf.config import Config
from sparktf.data.schema import EXAMPLE_COLUMNS, SPLITS, TRAINING_COLUMNS, FeaturePaths
from sparktf.errors import DataError, SchemaError
from sparktf.stages._common import spark_for
from sparktf.stages.state import TFRecordsResult

__all__ = ["TFRecordsArgs", "run", "tfrecords_args"]


@dataclass(frozen=True)
class TFRecordsArgs:
    """Where the examples are, where the TFRecords go, and how they are written."""

    examples_path: str
    out_path: str
    codec: str
    compression_level: int
    files_per_split: int


def tfrecords_args(cfg: Config) -> TFRecordsArgs:
    return TFRecordsArgs(
        examples_path=FeaturePaths(cfg.paths.features).examples,
        out_path=cfg.paths.tfrecords,
        codec=cfg.tfrecord.codec,
        compression_level=cfg.tfrecord.compression_level,
        files_per_split=cfg.tfrecord.files_per_split,
    )


def run(cfg: Config) -> TFRecordsResult:
    """Write the train, validation and test sets as TFRecords.

    Raises:
        DataError: the examples are missing or have split values other than train,
            validation and test.
        SchemaError: a contract column is missing.
    """
    from pyspark.sql import functions as F

    from sparktf.tfrecord import files as tfr_files
    from sparktf.tfrecord.api import write_tfrecord

    args = tfrecords_args(cfg)
    spark = spark_for(cfg)
    source = args.examples_path
    try:
        df = spark.read.parquet(source)
    except Exception as exc:  # noqa: BLE001 - Spark raises AnalysisException for a missing path
        raise DataError(
            f"Cannot read the training examples at {source}: {str(exc).splitlines()[0]}.",
            hint="Run the `features` stage first (sparktf prepare).",
            path=source,
        ) from None
    missing = [c for c in EXAMPLE_COLUMNS if c not in df.columns]
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
    columns = list(TRAINING_COLUMNS)
    file_counts = {}
    for split in SPLITS:
        part = df.where(F.col("split") == split).select(*columns)
        if args.files_per_split:
            part = part.repartition(args.files_per_split)
        target = f"{args.out_path}/{split}"
        write_tfrecord(part, target, codec=args.codec, compression_level=args.compression_level, mode="overwrite")
        found, _ = tfr_files.list_files(target)
        file_counts[split] = len(found)
    schema_path = f"{args.out_path}/schema.json"
    fs, inner = tfr_files.filesystem(schema_path)
    with fs.open_output_stream(inner, compression=None) as fh:
        fh.write(df.select(*columns).schema.json().encode("utf-8"))
    return TFRecordsResult(
        path=args.out_path,
        schema=schema_path,
        codec=args.codec,
        rows={s: rows.get(s, 0) for s in SPLITS},
        files=file_counts,
    )
