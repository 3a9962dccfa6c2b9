"""Registry contents as rich tables: a gate report, and the versions of a registered model.

Used by ``sparktf promote`` and ``sparktf models`` (see :mod:`sparktf.stages.register`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparktf.registry.gate import GateReport
from sparktf.registry.registry import ModelRegistry

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["gate_table", "models_table"]


def gate_table(report: GateReport) -> Table:
    """A gate report as a rich table, failed checks in red."""
    from rich.table import Table

    from sparktf.registry.gate import format_observed, format_threshold, format_value

    colour = "green" if report.passed else "red"
    table = Table(
        title=f"Validation gate: [{colour}]{report.status.upper()}[/]",
        caption=f"candidate {report.candidate} vs champion {report.champion or 'none (floors only)'}",
        caption_justify="left",
    )
    for name in ("result", "metric", "slice", "check", "candidate", "champion", "observed", "threshold"):
        table.add_column(
            name, justify="right" if name in ("candidate", "champion", "observed", "threshold") else "left"
        )
    marks = {"passed": "[green]pass[/]", "failed": "[bold red]FAIL[/]", "skipped": "[yellow]skip[/]"}
    for c in report.checks:
        table.add_row(
            marks[c.status],
            c.metric,
            c.where,
            c.kind,
            format_value(c.candidate),
            format_value(c.champion),
            format_observed(c),
            format_threshold(c),
        )
    return table


def models_table(registry: ModelRegistry, metrics: Sequence[str]) -> Table:
    """The versions of a registered model: aliases, validation status, key metrics, run, created."""
    import datetime as dt

    from rich.table import Table

    from sparktf.registry.gate import format_value

    table = Table(title=f"Registered model {registry.name} ({registry.tracking_uri})")
    for name in ("version", "aliases", "status", *metrics, "validated against", "run id", "created"):
        table.add_column(name, justify="right" if name in metrics or name == "version" else "left")
    colours = {"passed": "green", "failed": "red", "pending": "yellow"}
    for info in registry.versions():
        created = dt.datetime.fromtimestamp(info.created_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")
        status = info.status
        values = info.metrics
        table.add_row(
            str(info.version),
            ", ".join(info.aliases),
            f"[{colours.get(status, 'white')}]{status}[/]",
            *(format_value(values.get(m)) for m in metrics),
            info.tags.get("validated_against", ""),
            info.run_id,
            created,
        )
    return table
