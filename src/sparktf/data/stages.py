"""The pipeline stages of the data layer: ``generate``, ``validate`` and ``features``.

Each is ``fn(cfg, context) -> dict`` as :mod:`sparktf.pipeline` expects: it reads
and writes the workdir paths of docs/data-contract.md and returns a small
summary (counts and paths). Progress goes to the terminal through ``rich``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sparktf.config import Config
from sparktf.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from rich.console import Console

__all__ = ["features", "generate", "raw_events", "validate"]


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@contextmanager
def _step(console: Console, what: str) -> Iterator[dict[str, str]]:
    """A spinner while ``what`` runs, then one line with what the step put in ``note``."""
    note: dict[str, str] = {}
    t0 = time.perf_counter()
    with console.status(f"{what} …"):
        yield note
    done = f": {note['done']}" if note.get("done") else ""
    console.print(f"  [green]✓[/] {what}{done} [dim]({time.perf_counter() - t0:.1f} s)[/]")


def _spark(cfg: Config) -> SparkSession:
    from sparktf.spark import get_spark

    return get_spark(cfg.spark)


def raw_events(spark: SparkSession, cfg: Config) -> DataFrame:
    """The events of ``data.source``, as the ``generate`` stage writes them to ``data/raw``."""
    source = cfg.data.source
    if source == "synthetic":
        from sparktf.data.generator import generate_events

        return generate_events(spark, cfg.generator)
    if source == "movielens":
        from sparktf.data.movielens import load_movielens

        types = cfg.data.event_types
        return load_movielens(spark, cfg.data.path, event_type="view" if "view" in types else types[0])
    from sparktf.data.sources import read_source

    return read_source(spark, cfg.data)


def generate(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Write the events of ``data.source`` to ``data/raw`` (Parquet, values as read)."""
    spark = _spark(cfg)
    console = _console()
    what = {
        "synthetic": f"Generating {cfg.generator.num_events:,} flash-sale events (seed {cfg.generator.seed})",
        "movielens": f"Loading MovieLens ratings from {cfg.data.path or 'the recbole wheel'}",
        "path": f"Reading {cfg.data.format} events from {cfg.data.path}",
        "table": f"Reading events from table {cfg.data.table}",
    }[cfg.data.source]
    with _step(console, what) as note:
        raw_events(spark, cfg).write.mode("overwrite").parquet(cfg.paths.raw)
        rows = spark.read.parquet(cfg.paths.raw).count()
        note["done"] = f"{rows:,} rows → {cfg.paths.raw}"
    return {"source": cfg.data.source, "rows": rows, "path": cfg.paths.raw}


def validate(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Validate ``data/raw`` into ``data/events`` and ``data/quarantine`` (see :mod:`~sparktf.data.validation`)."""
    from rich.table import Table

    from sparktf.data import storage
    from sparktf.data.validation import validate_events

    spark = _spark(cfg)
    console = _console()
    if not storage.exists(spark, cfg.paths.raw):
        raise DataError(
            f"There are no raw events at {cfg.paths.raw} to validate.",
            hint="Run `sparktf generate` (same --workdir) first.",
        )
    with _step(console, "Validating events") as note:
        report = validate_events(
            spark,
            spark.read.parquet(cfg.paths.raw),
            cfg.data,
            events_path=cfg.paths.events,
            quarantine_path=cfg.paths.quarantine,
            report_path=cfg.paths.join("data", "validation.json"),
        )
        note["done"] = (
            f"{report.good_rows:,} good, {report.quarantined_rows:,} quarantined of {report.input_rows:,} rows"
        )
    if report.quarantined_rows:
        table = Table(title="Quarantined rows by reason")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, n in report.quarantined.items():
            if n:
                table.add_row(reason, f"{n:,}")
        console.print(table)
    if report.ignored_columns:
        console.print(f"  [yellow]Columns not carried into data/events:[/] {', '.join(report.ignored_columns)}")
    return report.to_dict()


def features(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Build ``data/features`` from ``data/events`` (see :mod:`~sparktf.data.features`)."""
    from sparktf.data import storage
    from sparktf.data.features import FeaturePaths, build_features

    spark = _spark(cfg)
    console = _console()
    if not storage.exists(spark, cfg.paths.events):
        raise DataError(
            f"There are no validated events at {cfg.paths.events}.",
            hint="Run `sparktf prepare` (validation runs first) or `sparktf run --from validate`.",
        )
    with _step(console, f"Building features ({cfg.features.split} split)") as note:
        stats = build_features(
            spark, cfg.paths.events, cfg.paths.features, cfg.features, event_types=cfg.data.event_types
        )
        ex = stats["examples"]
        note["done"] = (
            f"{ex['train']:,} train / {ex['validation']:,} validation / {ex['test']:,} test examples, "
            f"{stats['vocab']['items']:,} items and {stats['vocab']['users']:,} users in the vocabularies"
        )
    dropped = stats["users"]["dropped_below_min_user_events"]
    if dropped:
        console.print(
            f"  [yellow]{dropped:,} users[/] with fewer than {cfg.features.min_user_events} steps have no examples "
            f"({stats['users']['steps_of_dropped_users']:,} steps; see stats.json)."
        )
    return {
        "path": cfg.paths.features,
        "stats": FeaturePaths(cfg.paths.features).stats,
        "examples": stats["examples"],
        "vocab": stats["vocab"],
        "users": stats["users"],
    }
