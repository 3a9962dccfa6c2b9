"""The pipeline's ``register`` stage and the ``sparktf promote`` / ``sparktf models`` commands.

``register`` (after ``train`` and ``evaluate``): for every model the train stage
logged (``<workdir>/state/train.json``), in ``train.models`` order, it

1. evaluates the model over the full catalogue on ``evaluation.split`` (the same
   evaluation the gate uses, so it runs once per model),
2. registers it as a version of ``tracking.registered_model`` with those metrics,
   the data fingerprint (a hash of the features' ``stats.json``: input events
   fingerprint, feature config, row counts) and the feature vocabularies,
3. promotes it through the gate (:func:`~sparktf.registry.promote.promote_version`),
   evaluating the current champion on the same queries in the same process.

It writes ``<workdir>/state/register.json``. When no model passes, the stage
raises :class:`~sparktf.errors.ValidationGateError` with the failed checks: the
champion is unchanged and the run stops before the index and batch stages would
use a model that was not promoted.

Why our own code: the glue between our workdir layout, the evaluation package and
the registry is specific to sparktf.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sparktf.config import Config
from sparktf.errors import PipelineError, RegistryError, ValidationGateError
from sparktf.registry.gate import GateReport, ModelMetrics, as_model_metrics
from sparktf.registry.promote import EvaluateFn, PromotionResult, alias_problems, promote_version, rollback
from sparktf.registry.registry import ModelRegistry, VersionInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "catalogue_evaluator",
    "catalogue_score_fn",
    "data_fingerprint",
    "gate_table",
    "models_command",
    "models_table",
    "promote_command",
    "register_stage",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- evaluation


def catalogue_score_fn(exported: Any, catalogue: Iterable[Any]) -> Any:
    """A ``score_fn``: scores of every catalogue item (query embedding . item embedding),
    columns in ``catalogue`` order, for a loaded export (:class:`~sparktf.models.export.ExportedModel`).

    Unlike the evaluate stage's scorer, items the model does not know score -inf
    instead of failing: a champion trained before the catalogue grew must still be
    comparable with the candidate on today's queries (it simply cannot recommend
    the new items, and is measured that way).
    """
    import numpy as np

    position = {str(i): n for n, i in enumerate(exported.item_ids.tolist())}
    columns = np.asarray([position.get(str(i), -1) for i in catalogue], dtype=np.int64)
    known = columns >= 0
    items = exported.item_embeddings[np.where(known, columns, 0)]
    if not known.all():
        log.warning("%s does not know %d of %d catalogue items", exported.path, int((~known).sum()), len(known))

    def score(frame: Any) -> Any:
        users = frame["user_id"].astype(str).tolist() if "user_id" in frame else [""] * len(frame)
        histories = [list(h) if h is not None else [] for h in frame["history"]]
        scores = exported(users, histories)["query_embedding"] @ items.T
        scores[:, ~known] = -np.inf
        return scores

    return score


def catalogue_evaluator(cfg: Config, spark: SparkSession) -> EvaluateFn:
    """The gate's ``evaluate_fn``: full-catalogue evaluation of a model URI on ``evaluation.split``.

    The queries are read once; every model URI is downloaded and scored on them
    with the same protocol (``evaluation.ks``, ``exclude_seen``, slices). Results
    are kept per model files, so a model evaluated before registration is not
    scored again by the promotion.
    """
    from sparktf.evaluation.evalset import evaluate_scores, load_eval_set
    from sparktf.models.export import load_exported
    from sparktf.registry.load import download_model, export_dir

    ev = cfg.evaluation
    eval_set = load_eval_set(
        spark,
        cfg.paths.features,
        split=ev.split,
        exclude_seen=ev.exclude_seen,
        popularity_shares=ev.popularity_shares,
    )
    done: dict[str, ModelMetrics] = {}

    def evaluate(uri: str) -> ModelMetrics:
        local, info = download_model(uri, tracking_uri=cfg.tracking_uri)
        if local not in done:
            exported = load_exported(export_dir(local))
            result = evaluate_scores(
                eval_set,
                catalogue_score_fn(exported, eval_set.item_ids),
                model=info.label if info else uri,
                ks=ev.ks,
                batch_size=ev.batch_size,
            )
            done[local] = as_model_metrics(result)
        return done[local]

    return evaluate


# --------------------------------------------------------------------------- stage


def data_fingerprint(cfg: Config) -> str:
    """A short hash of the features' ``stats.json``; ``unknown`` when it cannot be read."""
    path = os.path.join(cfg.paths.features, "stats.json")
    try:
        with open(path, encoding="utf-8") as fh:
            stats = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("no data fingerprint: cannot read %s (%s)", path, exc)
        return "unknown"
    return hashlib.sha256(json.dumps(stats, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _trained(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    from sparktf.training.stage import read_state

    models = read_state(cfg, "train").get("models", {})
    order = [k for k in cfg.train.models if k in models] + [k for k in models if k not in cfg.train.models]
    out = []
    for kind in order:
        info = models[kind]
        if not isinstance(info, dict) or not info.get("model_uri"):
            raise PipelineError(
                f"state/train.json lists model {kind!r} without a model_uri ({info!r}).",
                hint="Run the train stage again: `sparktf run --from train`.",
            )
        out.append((kind, info))
    if not out:
        raise PipelineError(
            "state/train.json lists no trained model; there is nothing to register.",
            hint="Run the train stage: `sparktf run --from train`.",
        )
    return out


def _vocab_artifacts(cfg: Config) -> dict[str, str]:
    vocab = f"{cfg.paths.features}/vocab"
    if cfg.paths.is_local and not os.path.isdir(vocab):
        log.warning("no vocabularies at %s; the version gets none beside the export's own", vocab)
        return {}
    return {"vocab": vocab}


def register_stage(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Register every trained model and run each through the validation gate.

    Args:
        cfg: the run's config.
        context: earlier stages' outputs (unused: the train stage's state file is
            read instead, so ``sparktf run --from register`` works too).

    Returns:
        ``{"registered_model", "versions": [...], "champion", "previous"}``.

    Raises:
        ValidationGateError: no model passed the gate (each one's failed checks are
            in the message); nothing was promoted.
    """
    from sparktf.spark import get_spark
    from sparktf.training.stage import write_state

    registry = ModelRegistry.from_config(cfg)
    evaluate = catalogue_evaluator(cfg, get_spark(cfg.spark))
    fingerprint = data_fingerprint(cfg)
    artifacts = _vocab_artifacts(cfg)
    results: list[tuple[str, VersionInfo, PromotionResult]] = []
    for kind, trained in _trained(cfg):
        metrics = evaluate(trained["model_uri"])
        info = registry.register(
            trained["model_uri"],
            run_id=trained.get("run_id"),
            metrics=metrics.overall,
            data_fingerprint=fingerprint,
            artifacts=artifacts,
            description=f"{kind} model from run {trained.get('run_id', '?')}",
        )
        result = promote_version(registry, info.version, evaluate, cfg.gate)
        log.info("%s", result.message())
        results.append((kind, info, result))
    aliases = registry.aliases()
    out: dict[str, Any] = {
        "registered_model": registry.name,
        "tracking_uri": cfg.tracking_uri,
        "versions": [
            {
                "model": kind,
                "version": info.version,
                "run_id": info.run_id,
                "outcome": result.outcome,
                "report": result.report_uri,
                "failed_checks": [c.to_dict() for c in result.report.failed_checks] if result.report else [],
            }
            for kind, info, result in results
        ],
        "champion": aliases.get(cfg.gate.champion_alias),
        "previous": aliases.get(cfg.gate.previous_alias),
    }
    write_state(cfg, "register", out)
    if not any(r.outcome != "rejected" for _, _, r in results):
        raise ValidationGateError(
            "No trained model passed the validation gate; the champion is unchanged "
            f"({_alias_text(aliases.get(cfg.gate.champion_alias))}).\n" + "\n".join(r.message() for _, _, r in results),
            hint="Each failed check is listed above with its numbers; the reports are in the runs (gate/report.md).",
            model=registry.name,
        )
    return out


def _alias_text(version: int | None) -> str:
    return f"v{version}" if version is not None else "none yet"


# --------------------------------------------------------------------------- CLI


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


def _existing_registry(cfg: Config) -> ModelRegistry:
    """The registry of a store that exists: opening a missing SQLite file would create an
    empty store (and the workdir) just to report that nothing is there."""
    uri = cfg.tracking_uri
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
    if path and not os.path.exists(path):
        raise RegistryError(
            f"There is no MLflow store at {path} ({uri}): nothing was trained or registered in this workdir.",
            hint="Run `sparktf run` first, or point --workdir / tracking.tracking_uri at the run's store.",
        )
    return ModelRegistry.from_config(cfg)


def promote_command(cfg: Config, console: Console, *, version: int | None = None, do_rollback: bool = False) -> None:
    """``sparktf promote [--version N] [--rollback]``.

    Raises:
        ValidationGateError: the candidate failed the gate (exit code 1).
        RegistryError: nothing to promote or roll back, or the registry failed.
    """
    registry = _existing_registry(cfg)
    if do_rollback:
        console.print(rollback(registry, cfg.gate).message())
        return
    if version is None:
        pending = registry.latest(status="pending")
        if pending is None:
            listed = ", ".join(f"v{i.version} ({i.status})" for i in registry.versions()[:10]) or "none"
            raise RegistryError(
                f"No version of {registry.name!r} at {cfg.tracking_uri} is waiting for validation "
                f"(versions: {listed}).",
                hint="Register one with `sparktf run --from register`, or pass --version N to validate a given one.",
            )
        version = pending.version
    from sparktf.spark import get_spark

    result = promote_version(registry, version, catalogue_evaluator(cfg, get_spark(cfg.spark)), cfg.gate)
    if result.report is not None:
        console.print(gate_table(result.report))
    console.print(result.message())
    result.raise_if_rejected()


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


def models_command(cfg: Config, console: Console) -> None:
    """``sparktf models``: the table, and a warning when an alias is on a version that did not pass."""
    registry = _existing_registry(cfg)
    if not registry.exists():
        raise RegistryError(
            f"Registered model {registry.name!r} does not exist at {cfg.tracking_uri} yet.",
            hint="Train and register a model first (`sparktf run`), or check tracking.tracking_uri "
            "and tracking.registered_model.",
        )
    keys = list(dict.fromkeys(t.metric for t in cfg.gate.thresholds if not t.slice))
    console.print(models_table(registry, keys))
    for problem in alias_problems(registry, cfg.gate):
        console.print(f"[bold red]warning[/]: {problem}")
