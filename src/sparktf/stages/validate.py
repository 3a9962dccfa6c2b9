"""Stage 2, ``validate``: ``data/raw`` into ``data/events`` and ``data/quarantine``.

Every row is either good or quarantined with its reason (see
:mod:`sparktf.data.validation`); the run stops when more than
``data.max_bad_fraction`` is quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparktf.config import Config, DataConfig
from sparktf.errors import DataError
from sparktf.stages._common import console, spark_for, step
from sparktf.stages.state import ValidateResult

__all__ = ["ValidateArgs", "run", "validate_args"]


@dataclass(frozen=True)
class ValidateArgs:
    """The arguments of :func:`sparktf.data.validation.validate_events`."""

    rules: DataConfig
    raw_path: str
    events_path: str
    quarantine_path: str
    report_path: str


def validate_args(cfg: Config) -> ValidateArgs:
    return ValidateArgs(
        rules=cfg.data,
        raw_path=cfg.paths.raw,
        events_path=cfg.paths.events,
        quarantine_path=cfg.paths.quarantine,
        report_path=cfg.paths.join("data", "validation.json"),
    )


def run(cfg: Config) -> ValidateResult:
    from rich.table import Table

    from sparktf.data import storage
    from sparktf.data.validation import validate_events

    args = validate_args(cfg)
    spark = spark_for(cfg)
    out = console()
    if not storage.exists(spark, args.raw_path):
        raise DataError(
            f"There are no raw events at {args.raw_path} to validate.",
            hint="Run `sparktf generate` (same --workdir) first.",
        )
    with step(out, "Validating events") as note:
        report = validate_events(
            spark,
            spark.read.parquet(args.raw_path),
            args.rules,
            events_path=args.events_path,
            quarantine_path=args.quarantine_path,
            report_path=args.report_path,
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
        out.print(table)
    if report.ignored_columns:
        out.print(f"  [yellow]Columns not carried into data/events:[/] {', '.join(report.ignored_columns)}")
    return ValidateResult(
        input_rows=report.input_rows,
        good_rows=report.good_rows,
        quarantined_rows=report.quarantined_rows,
        quarantined={k: int(v) for k, v in report.quarantined.items()},
        events_path=args.events_path,
        quarantine_path=args.quarantine_path,
        report_path=args.report_path,
    )
