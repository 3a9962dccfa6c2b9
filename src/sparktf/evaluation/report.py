"""Reports of evaluation results: markdown, a rich table, JSON, and MLflow.

Every rendering starts with the protocol sentence (:meth:`EvalProtocol.sentence`), so a
number is never shown without how it was measured; results measured under different
protocols are flagged as not comparable.

MLflow metric names may not contain ``@`` and slice values may contain anything, so
:func:`mlflow_metric_names` maps each metric to a safe name (``ndcg@10`` ->
``ndcg_at_10``, ``user_activity/high/ndcg_at_10``) and the mapping is logged with the
report.

Why our own code: MLflow has no notion of sliced ranking metrics or of a protocol,
and the comparison table (rows = models, columns = metrics) is specific to us.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparktf.errors import TrackingError
from sparktf.evaluation.metrics import EvaluationResult

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "comparison_markdown",
    "default_metrics",
    "log_to_mlflow",
    "mlflow_metric_name",
    "mlflow_metric_names",
    "print_report",
    "report_markdown",
    "results_from_json",
    "results_to_json",
    "rich_table",
    "slices_markdown",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
# MLflow takes at most 1000 metrics per log_batch call.
_BATCH = 1000


def default_metrics(results: Sequence[EvaluationResult]) -> list[str]:
    """The metric columns of a comparison: per K hit rate and NDCG, then MRR, then coverage."""
    keys: list[str] = []
    for r in results:
        keys.extend(k for k in r.overall if k not in keys)

    def order(key: str) -> tuple[int, int, str]:
        name, _, k = key.partition("@")
        group = {"hr": 0, "ndcg": 0, "mrr": 1, "coverage": 2}.get(name, 3)
        kk = int(k) if k.isdigit() else 0
        return (group, kk if group != 1 else 0, {"hr": "0", "ndcg": "1"}.get(name, name))

    return sorted(keys, key=order)


def _protocol_lines(results: Sequence[EvaluationResult]) -> list[str]:
    sentences = {r.protocol.sentence() for r in results}
    if len(sentences) <= 1:
        return sorted(sentences)
    return [
        "The results below were measured under different protocols and are not comparable:",
        *(f"- {r.model}: {r.protocol.sentence()}" for r in results),
    ]


def _best(results: Sequence[EvaluationResult], metric: str) -> float | None:
    values = [r.overall[metric] for r in results if metric in r.overall]
    return max(values) if len(values) > 1 else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def comparison_markdown(results: Sequence[EvaluationResult], metrics: Sequence[str] | None = None) -> str:
    """A markdown table, one row per model and one column per metric, best in bold.

    The protocol sentence comes first.
    """
    metrics = list(metrics) if metrics is not None else default_metrics(results)
    lines = [*_protocol_lines(results), ""]
    lines.append("| model | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "---:|" * len(metrics))
    best = {m: _best(results, m) for m in metrics}
    for r in results:
        cells = []
        for m in metrics:
            v = r.overall.get(m)
            cell = _fmt(v)
            cells.append(f"**{cell}**" if v is not None and v == best[m] else cell)
        lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def slices_markdown(result: EvaluationResult, metrics: Sequence[str] | None = None) -> str:
    """One markdown table per slicing of one result: rows = slice values, with counts."""
    if metrics is None:
        metrics = [m for m in default_metrics([result]) if not m.startswith("coverage@")]
    out: list[str] = []
    for slicing, values in result.slices.items():
        out.append(f"#### {result.model} by {slicing}")
        out.append("")
        out.append(f"| {slicing} | queries | " + " | ".join(metrics) + " |")
        out.append("|---|---:|" + "---:|" * len(metrics))
        for value, m in values.items():
            out.append(
                f"| {value} | {int(m.get('count', 0)):,} | " + " | ".join(_fmt(m.get(x)) for x in metrics) + " |"
            )
        out.append("")
    return "\n".join(out)


def report_markdown(results: Sequence[EvaluationResult]) -> str:
    """The comparison table followed by every result's slices."""
    parts = ["## Evaluation", "", comparison_markdown(results)]
    for r in results:
        if r.slices:
            parts.append(slices_markdown(r))
    return "\n".join(parts)


def rich_table(results: Sequence[EvaluationResult], metrics: Sequence[str] | None = None) -> Table:
    """The comparison as a rich table, the protocol as its caption, best in bold."""
    from rich.table import Table

    metrics = list(metrics) if metrics is not None else default_metrics(results)
    names = {r.protocol.name for r in results}
    title = f"Evaluation, {names.pop()} protocol" if len(names) == 1 else "Evaluation"
    table = Table(title=title, caption="\n".join(_protocol_lines(results)), caption_justify="left")
    table.add_column("model", style="bold")
    for m in metrics:
        table.add_column(m, justify="right")
    best = {m: _best(results, m) for m in metrics}
    for r in results:
        cells = []
        for m in metrics:
            v = r.overall.get(m)
            cells.append(f"[bold green]{_fmt(v)}[/]" if v is not None and v == best[m] else _fmt(v))
        table.add_row(r.model, *cells)
    return table


def print_report(results: Sequence[EvaluationResult], console: Console | None = None) -> None:
    """Print the comparison table (with its protocol) to the terminal."""
    from rich.console import Console

    (console or Console(highlight=False)).print(rich_table(results))


def results_to_json(results: Sequence[EvaluationResult]) -> str:
    """Results as a JSON list (protocol sentence included)."""
    return json.dumps([r.to_dict() for r in results], indent=2, sort_keys=False, allow_nan=True)


def results_from_json(text: str) -> list[EvaluationResult]:
    """The inverse of :func:`results_to_json`."""
    return [EvaluationResult.from_dict(d) for d in json.loads(text)]


# --------------------------------------------------------------------------- MLflow


def mlflow_metric_name(key: str) -> str:
    """An MLflow-safe name for a metric key: ``ndcg@10`` -> ``ndcg_at_10``."""
    return _UNSAFE.sub("_", key.replace("@", "_at_"))


def mlflow_metric_names(result: EvaluationResult, prefix: str = "") -> dict[str, tuple[str, str, str]]:
    """Every metric of ``result`` under an MLflow-safe name.

    Returns:
        ``{mlflow name: (slicing, slice value, metric key)}``; the overall metrics
        have slicing and value ``""``. Slice values that clean up to the same text
        get ``_v2``, ``_v3``... suffixes so no two metrics share a name.
    """
    out: dict[str, tuple[str, str, str]] = {}
    for key in result.overall:
        out[f"{prefix}{mlflow_metric_name(key)}"] = ("", "", key)
    for slicing, values in result.slices.items():
        used: set[str] = set()
        for value in values:
            safe = _UNSAFE.sub("_", value) or "_"
            candidate, n = safe, 1
            while candidate in used:
                n += 1
                candidate = f"{safe}_v{n}"
            used.add(candidate)
            for key in values[value]:
                name = f"{prefix}{mlflow_metric_name(slicing)}/{candidate}/{mlflow_metric_name(key)}"
                out[name] = (slicing, value, key)
    return out


def _value(result: EvaluationResult, where: tuple[str, str, str]) -> float:
    slicing, value, key = where
    return result.overall[key] if not slicing else result.slices[slicing][value][key]


def log_to_mlflow(
    result: EvaluationResult,
    prefix: str = "",
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    artifact_dir: str = "evaluation",
) -> str:
    """Log a result's metrics, protocol and report to MLflow.

    Logs into ``run_id``, else the active run, else a new run named
    ``evaluate-<model>`` in the current experiment (these two need the current
    tracking URI). Metric names come from
    :func:`mlflow_metric_names`; the protocol goes into the tag
    ``<prefix>evaluation.protocol``; the markdown report, the JSON result and the
    name mapping are artifacts under ``artifact_dir``.

    Args:
        result: what to log.
        prefix: put before every metric name, e.g. ``"test/"`` or ``"baseline/als/"``.
        run_id: an existing run to log into.
        tracking_uri: the store of ``run_id``; ``None`` for MLflow's current one.
        artifact_dir: the artifact folder.

    Returns:
        The run id logged into.

    Raises:
        TrackingError: MLflow refused or could not be reached, or ``tracking_uri`` is
            not the current store and no ``run_id`` was given.
    """
    import mlflow
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    names = mlflow_metric_names(result, prefix)
    stem = _UNSAFE.sub("_", f"{prefix}{result.model}").replace("/", "_")
    own_run = False
    uri = tracking_uri or mlflow.get_tracking_uri()
    if run_id is None and tracking_uri is not None and tracking_uri != mlflow.get_tracking_uri():
        raise TrackingError(
            f"Cannot log the evaluation of {result.model!r} to {tracking_uri}: no run_id was given, and the "
            f"active or new run would live in the current store {mlflow.get_tracking_uri()}.",
            hint="Pass run_id=, or call mlflow.set_tracking_uri(...) first.",
        )
    try:
        if run_id is None:
            active = mlflow.active_run()
            if active is None:
                run_id = mlflow.start_run(run_name=f"evaluate-{result.model}").info.run_id
                own_run = True
            else:
                run_id = active.info.run_id
        client = mlflow.MlflowClient(tracking_uri)
        now = int(time.time() * 1000)
        metrics = [Metric(name, _value(result, where), now, 0) for name, where in names.items()]
        for i in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _BATCH])
        client.set_tag(run_id, f"{prefix}evaluation.protocol", result.protocol.sentence())
        client.log_text(run_id, report_markdown([result]), f"{artifact_dir}/{stem}.md")
        client.log_text(run_id, results_to_json([result]), f"{artifact_dir}/{stem}.json")
        client.log_text(
            run_id,
            json.dumps({k: list(v) for k, v in names.items()}, indent=2),
            f"{artifact_dir}/{stem}.metric_names.json",
        )
    except MlflowException as exc:
        raise TrackingError(
            f"Logging the evaluation of {result.model!r} to MLflow run {run_id} at {uri} failed: "
            f"{str(exc).splitlines()[0]}",
            hint="Check tracking.tracking_uri and that the run is still active.",
        ) from None
    finally:
        if own_run:
            mlflow.end_run()
    return run_id
