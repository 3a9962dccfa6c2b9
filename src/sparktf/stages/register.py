"""Stage 7, ``register``: register every trained model and run it through the validation gate.

For every model the train stage logged (in ``train.models`` order) it

1. evaluates the model over the full catalogue with the protocol of ``[evaluation]``
   (:mod:`sparktf.stages._evaluation`, the same as the ``evaluate`` stage's table),
2. registers it as a version of ``tracking.registered_model`` with those metrics,
   the data fingerprint (a hash of the features' ``stats.json``) and the feature
   vocabularies,
3. promotes it through the gate (:func:`~sparktf.registry.promote.promote_version`
   with ``[gate]``), evaluating the current champion on the same queries.

When no model passes it raises :class:`~sparktf.errors.ValidationGateError` with
the failed checks: the champion is unchanged and the run stops before the index and
batch stages would use a model that was not promoted.

The ``sparktf promote`` and ``sparktf models`` commands live here too: they are the
same translation of ``[tracking]`` and ``[gate]`` into registry calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparktf.config import Config, GateConfig
from sparktf.data.schema import FeaturePaths
from sparktf.errors import PipelineError, RegistryError, ValidationGateError
from sparktf.stages._common import spark_for
from sparktf.stages._evaluation import catalogue_evaluator, eval_args
from sparktf.stages.state import RegisteredVersion, RegisterResult, TrainedModel, TrainResult, read_result

if TYPE_CHECKING:
    from rich.console import Console

    from sparktf.registry.registry import ModelRegistry

__all__ = ["RegistryArgs", "catalogue_evaluator", "models_command", "promote_command", "registry_args", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryArgs:
    """Which registry, and the gate in front of its champion alias."""

    tracking_uri: str
    registered_model: str
    gate: GateConfig


def registry_args(cfg: Config) -> RegistryArgs:
    return RegistryArgs(tracking_uri=cfg.tracking_uri, registered_model=cfg.tracking.registered_model, gate=cfg.gate)


def _registry(args: RegistryArgs) -> ModelRegistry:
    from sparktf.registry.registry import ModelRegistry

    return ModelRegistry(args.tracking_uri, args.registered_model)


def data_fingerprint(features_path: str) -> str:
    """A short hash of the features' ``stats.json``; ``unknown`` when it cannot be read."""
    path = FeaturePaths(features_path).stats
    try:
        with open(path, encoding="utf-8") as fh:
            stats = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("no data fingerprint: cannot read %s (%s)", path, exc)
        return "unknown"
    return hashlib.sha256(json.dumps(stats, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _in_order(cfg: Config, trained: TrainResult) -> list[TrainedModel]:
    order: dict[str, int] = {kind: i for i, kind in enumerate(cfg.train.models)}
    models = sorted(trained.models, key=lambda m: order.get(m.kind, len(order)))
    if not models:
        raise PipelineError(
            "state/train.json lists no trained model; there is nothing to register.",
            hint="Run the train stage: `sparktf run --from train`.",
        )
    return models


def _vocab_artifacts(features_path: str, local: bool) -> dict[str, str]:
    vocab = FeaturePaths(features_path).vocab
    if local and not os.path.isdir(vocab):
        log.warning("no vocabularies at %s; the version gets none beside the export's own", vocab)
        return {}
    return {"vocab": vocab}


def run(cfg: Config) -> RegisterResult:
    """Register every trained model and run each through the validation gate.

    Raises:
        ValidationGateError: no model passed the gate (each one's failed checks are
            in the message); nothing was promoted.
    """
    from sparktf.registry.promote import promote_version

    args = registry_args(cfg)
    registry = _registry(args)
    evaluate = catalogue_evaluator(spark_for(cfg), eval_args(cfg), tracking_uri=args.tracking_uri)
    fingerprint = data_fingerprint(cfg.paths.features)
    artifacts = _vocab_artifacts(cfg.paths.features, cfg.paths.is_local)
    versions: list[RegisteredVersion] = []
    messages: list[str] = []
    for trained in _in_order(cfg, read_result(cfg.paths, TrainResult)):
        metrics = evaluate(trained.model_uri)
        info = registry.register(
            trained.model_uri,
            run_id=trained.run_id,
            metrics=metrics.overall,
            data_fingerprint=fingerprint,
            artifacts=artifacts,
            description=f"{trained.kind} model from run {trained.run_id}",
        )
        result = promote_version(registry, info.version, evaluate, args.gate)
        log.info("%s", result.message())
        messages.append(result.message())
        versions.append(
            RegisteredVersion(
                model=trained.kind,
                version=info.version,
                run_id=info.run_id,
                outcome=result.outcome,
                report=result.report_uri,
                failed_checks=tuple(c.to_dict() for c in result.report.failed_checks) if result.report else (),
            )
        )
    aliases = registry.aliases()
    out = RegisterResult(
        registered_model=registry.name,
        tracking_uri=args.tracking_uri,
        champion_alias=args.gate.champion_alias,
        versions=tuple(versions),
        champion=aliases.get(args.gate.champion_alias),
        previous=aliases.get(args.gate.previous_alias),
    )
    if not any(v.outcome != "rejected" for v in versions):
        # The record is written first, so the summary can say why.
        from sparktf.stages.state import write_result

        write_result(cfg.paths, out)
        champion = aliases.get(args.gate.champion_alias)
        raise ValidationGateError(
            "No trained model passed the validation gate; the champion is unchanged "
            f"({f'v{champion}' if champion is not None else 'none yet'}).\n" + "\n".join(messages),
            hint="Each failed check is listed above with its numbers; the reports are in the runs (gate/report.md).",
            model=registry.name,
        )
    return out


# --------------------------------------------------------------------------- commands


def _existing_registry(args: RegistryArgs) -> ModelRegistry:
    """The registry of a store that exists: opening a missing SQLite file would create an
    empty store (and the workdir) just to report that nothing is there."""
    uri = args.tracking_uri
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
    if path and not os.path.exists(path):
        raise RegistryError(
            f"There is no MLflow store at {path} ({uri}): nothing was trained or registered in this workdir.",
            hint="Run `sparktf run` first, or point --workdir / tracking.tracking_uri at the run's store.",
        )
    return _registry(args)


def promote_command(cfg: Config, console: Console, *, version: int | None = None, do_rollback: bool = False) -> None:
    """``sparktf promote [--version N] [--rollback]``.

    Raises:
        ValidationGateError: the candidate failed the gate (exit code 1).
        RegistryError: nothing to promote or roll back, or the registry failed.
    """
    from sparktf.registry.promote import promote_version, rollback
    from sparktf.registry.tables import gate_table

    args = registry_args(cfg)
    registry = _existing_registry(args)
    if do_rollback:
        console.print(rollback(registry, args.gate).message(), markup=False)
        return
    if version is None:
        pending = registry.latest(status="pending")
        if pending is None:
            listed = ", ".join(f"v{i.version} ({i.status})" for i in registry.versions()[:10]) or "none"
            raise RegistryError(
                f"No version of {registry.name!r} at {args.tracking_uri} is waiting for validation "
                f"(versions: {listed}).",
                hint="Register one with `sparktf run --from register`, or pass --version N to validate a given one.",
            )
        version = pending.version
    evaluate = catalogue_evaluator(spark_for(cfg), eval_args(cfg), tracking_uri=args.tracking_uri)
    result = promote_version(registry, version, evaluate, args.gate)
    if result.report is not None:
        console.print(gate_table(result.report))
    console.print(result.message(), markup=False)
    result.raise_if_rejected()


def models_command(cfg: Config, console: Console) -> None:
    """``sparktf models``: the table, and a warning when an alias is on a version that did not pass."""
    from sparktf.registry.promote import alias_problems
    from sparktf.registry.tables import models_table

    args = registry_args(cfg)
    registry = _existing_registry(args)
    if not registry.exists():
        raise RegistryError(
            f"Registered model {registry.name!r} does not exist at {args.tracking_uri} yet.",
            hint="Train and register a model first (`sparktf run`), or check tracking.tracking_uri "
            "and tracking.registered_model.",
        )
    keys = list(dict.fromkeys(t.metric for t in args.gate.thresholds if not t.slice))
    console.print(models_table(registry, keys))
    for problem in alias_problems(registry, args.gate):
        console.print("[bold red]warning[/]: ", end="")
        console.print(problem, markup=False)
