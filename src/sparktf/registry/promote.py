"""Promotion through the validation gate, with its safety checks, and rollback.

:func:`promote_version` is TFX's Evaluator -> ModelBlessing -> Pusher on MLflow:

1. **Evaluate both sides in one call**: the candidate and the current champion are
   scored by the same ``evaluate_fn(model_uri) -> metrics`` (the pipeline's runs
   the full-catalogue evaluation on the held-out split), and the gate
   (:func:`~sparktf.registry.gate.evaluate_gate`) compares them; with no champion
   only the floors apply.
2. **Record the outcome like a blessing**: the report (``gate/report.md``,
   ``gate/report.json``) and both sides' overall metrics (``gate/candidate/*``,
   ``gate/champion/*``) go to the candidate's run, then the version tags
   ``validation_status``, ``validation_failed_checks``, ``validated_against``,
   ``validation_report``.
3. **A failed candidate stops there**: the aliases are never touched for it.
4. **A passed candidate is promoted under the promotion lock**
   (:class:`~sparktf.registry.lock.PromotionLock`). If the champion changed while
   this process was evaluating (another promotion or a rollback landed), the lock is
   released, the new champion is evaluated and the gate runs again, up to
   ``gate.max_attempts`` times; so every promoted version was validated against
   the version it replaced. Then ``previous`` moves to the old champion and
   ``champion`` to the candidate (in that order, so a crash between the two leaves
   both on the old champion, never ``previous`` lost).
5. **Verify after set**: the aliases are read back. A champion on a version whose
   ``validation_status`` is not ``passed`` (someone moved it outside this protocol)
   is moved back to the last version known to have passed, and the promotion
   raises; so is a champion moved elsewhere in the meantime.

:func:`rollback` moves ``champion`` back to ``previous`` under the same lock, and
``previous`` one step further back along the ``replaced_version`` tags (or removes
it when there is nothing older that passed).

Why our own code: MLflow's registry has aliases and tags but no gate, no blessing
and no compare-and-set, so "never point the champion at a version that did not
pass" has to be built from the lock, the order of writes and the read-back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sparktf.config import GateConfig
from sparktf.errors import RegistryError, SparkTFError, ValidationGateError
from sparktf.registry.gate import GateReport, ModelMetrics, as_model_metrics, evaluate_gate
from sparktf.registry.lock import PromotionLock
from sparktf.registry.registry import (
    FAILED_CHECKS_TAG,
    PROMOTED_AT_TAG,
    REPLACED_TAG,
    REPORT_TAG,
    ROLLED_BACK_AT_TAG,
    ROLLED_BACK_TO_TAG,
    STATUS_TAG,
    VALIDATED_AGAINST_TAG,
    VALIDATED_AT_TAG,
    ModelRegistry,
    VersionInfo,
    mlflow_errors,
    now_iso,
)

__all__ = [
    "REPORT_JSON",
    "REPORT_MARKDOWN",
    "EvaluateFn",
    "PromotionResult",
    "RollbackResult",
    "alias_problems",
    "promote_version",
    "rollback",
    "verify_champion",
]

log = logging.getLogger(__name__)

#: ``evaluate_fn(model_uri) -> metrics``: anything :func:`as_model_metrics` reads.
EvaluateFn = Callable[[str], Any]

REPORT_MARKDOWN = "gate/report.md"
REPORT_JSON = "gate/report.json"


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion did.

    Attributes:
        name: the registered model.
        candidate: the candidate version.
        outcome: ``promoted``, ``rejected`` (failed the gate) or ``already_champion``.
        report: the gate report (``None`` when the candidate was already champion).
        champion_before: the champion it was last validated against (``None``: none).
        champion_after: the champion when the promotion ended.
        previous_after: the ``previous`` alias when the promotion ended.
        attempts: gate runs (more than one when the champion moved meanwhile).
        report_uri: where the JSON report was logged (``runs:/<run>/gate/report.json``).
    """

    name: str
    candidate: int
    outcome: Literal["promoted", "rejected", "already_champion"]
    report: GateReport | None
    champion_before: int | None
    champion_after: int | None
    previous_after: int | None
    attempts: int = 1
    report_uri: str = ""

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def message(self) -> str:
        label = f"{self.name} v{self.candidate}"
        if self.outcome == "already_champion":
            return f"{label} is already the champion; nothing to do."
        assert self.report is not None
        if self.outcome == "promoted":
            before = f"v{self.champion_before}" if self.champion_before is not None else "none"
            return f"{label} passed the validation gate and is the champion now (previous champion: {before})." + (
                f" Report: {self.report_uri}." if self.report_uri else ""
            )
        return self.report.summary() + (f"\nReport: {self.report_uri}." if self.report_uri else "")

    def raise_if_rejected(self) -> None:
        """Raise :class:`ValidationGateError` (with the failed checks) when the gate said no."""
        if self.outcome == "rejected":
            assert self.report is not None
            raise ValidationGateError(
                self.message(),
                hint="The champion is unchanged. See the report for every check; adjust the model or, "
                "deliberately, [[gate.thresholds]].",
                model=self.name,
                version=self.candidate,
                failed_checks=[c.to_dict() for c in self.report.failed_checks],
            )


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did: ``champion`` moved from ``from_version`` to ``to_version``."""

    name: str
    from_version: int | None
    to_version: int
    previous_after: int | None

    def message(self) -> str:
        before = f"v{self.from_version}" if self.from_version is not None else "no champion"
        previous = f"v{self.previous_after}" if self.previous_after is not None else "none (nothing older passed)"
        return f"Rolled {self.name} back from {before} to v{self.to_version}; previous is now {previous}."


# --------------------------------------------------------------------------- helpers


def _evaluate(evaluate_fn: EvaluateFn, info: VersionInfo, role: str) -> ModelMetrics:
    t0 = time.perf_counter()
    try:
        metrics = as_model_metrics(evaluate_fn(info.uri))
    except SparkTFError:
        raise
    except Exception as exc:
        raise RegistryError(
            f"Evaluating the {role} {info.label} ({info.uri}) failed: {type(exc).__name__}: {exc}",
            hint="The gate cannot compare without both sides' metrics; fix the evaluation and promote again.",
            model=info.name,
            version=info.version,
        ) from exc
    log.info("evaluated %s %s in %.1f s", role, info.label, time.perf_counter() - t0)
    return metrics


def _result(
    registry: ModelRegistry,
    gate: GateConfig,
    cand: VersionInfo,
    outcome: Literal["promoted", "rejected", "already_champion"],
    report: GateReport | None,
    champion_before: int | None,
    attempts: int = 1,
    report_uri: str = "",
) -> PromotionResult:
    aliases = registry.aliases()
    return PromotionResult(
        name=registry.name,
        candidate=cand.version,
        outcome=outcome,
        report=report,
        champion_before=champion_before,
        champion_after=aliases.get(gate.champion_alias),
        previous_after=aliases.get(gate.previous_alias),
        attempts=attempts,
        report_uri=report_uri,
    )


def _lock(registry: ModelRegistry, gate: GateConfig, owner: str | None) -> PromotionLock:
    return PromotionLock(
        registry.client,
        registry.name,
        registry.tracking_uri,
        ttl_seconds=gate.lock_ttl_seconds,
        timeout_seconds=gate.lock_timeout_seconds,
        owner=owner,
    )


def _champion_version(registry: ModelRegistry, gate: GateConfig) -> int | None:
    return registry.aliases().get(gate.champion_alias)


def _log_report(registry: ModelRegistry, cand: VersionInfo, report: GateReport, attempt: int) -> str:
    """Log the report and both sides' overall metrics to the candidate's run; return the JSON's URI."""
    from mlflow.entities import Metric

    from sparktf.training.tracking import metric_key

    if not cand.run_id:
        log.warning("%s has no run; the gate report is kept in its tags only", cand.label)
        return ""
    client = registry.client
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"gate/{side}/{metric_key(k)}", float(v), now, attempt)
        for side, source in (("candidate", report.candidate_metrics), ("champion", report.champion_metrics))
        if source is not None
        for k, v in source.overall.items()
        if isinstance(v, int | float) and v == v and abs(v) != float("inf")
    ]
    action = f"Logging the gate report of {cand.label} to run {cand.run_id}"
    with mlflow_errors(action, registry.tracking_uri, model=registry.name, version=cand.version):
        client.log_text(cand.run_id, report.to_markdown(), REPORT_MARKDOWN)
        client.log_text(cand.run_id, report.to_json(), REPORT_JSON)
        for i in range(0, len(metrics), 500):
            client.log_batch(cand.run_id, metrics=metrics[i : i + 500])
    return f"runs:/{cand.run_id}/{REPORT_JSON}"


def _record(
    registry: ModelRegistry, cand: VersionInfo, report: GateReport, champion: VersionInfo | None, attempt: int
) -> str:
    # The report first, so a tag never points at a report that is not there.
    uri = _log_report(registry, cand, report, attempt)
    registry.set_tags(
        cand.version,
        {
            STATUS_TAG: report.status,
            FAILED_CHECKS_TAG: report.failed_checks_json(),
            VALIDATED_AGAINST_TAG: str(champion.version) if champion else "none",
            VALIDATED_AT_TAG: now_iso(),
            REPORT_TAG: uri or "tags only (the version has no run)",
        },
    )
    return uri


# --------------------------------------------------------------------------- verification


def alias_problems(registry: ModelRegistry, gate: GateConfig) -> list[str]:
    """What is wrong with the champion and previous aliases now (empty when nothing).

    A problem is an alias on a version whose ``validation_status`` is not ``passed``,
    which only a change made outside sparktf (the MLflow UI, a script) can cause.
    """
    problems = []
    for alias in (gate.champion_alias, gate.previous_alias):
        info = registry.by_alias(alias)
        if info is not None and info.status != "passed":
            problems.append(
                f"alias {alias!r} points at {info.label}, whose validation_status is {info.status!r}, not 'passed'"
            )
    return problems


def verify_champion(
    registry: ModelRegistry, gate: GateConfig, expected: int, *, repair_to: int | None = None
) -> VersionInfo:
    """Read the champion alias back and check it is ``expected`` and passed.

    Args:
        registry: the registry.
        gate: the ``[gate]`` config (alias names).
        expected: the version the champion alias should point at.
        repair_to: a version known to have passed; when the alias points at a
            version that did not pass, it is moved there before raising.

    Returns:
        The champion version.

    Raises:
        RegistryError: the alias points elsewhere, or at a version that did not
            pass (after the repair, which the message reports).
    """
    alias = gate.champion_alias
    champion = registry.by_alias(alias)
    if champion is not None and champion.version == expected and champion.status == "passed":
        return champion
    seen = f"{champion.label} ({champion.status})" if champion else "nothing"
    if champion is None or champion.status != "passed":
        repaired = ""
        if repair_to is not None and registry.get(repair_to).status == "passed":
            registry.set_alias(alias, repair_to)
            repaired = f" It was moved back to {registry.name} v{repair_to}, which passed."
        raise RegistryError(
            f"After the promotion, alias {alias!r} of {registry.name!r} points at {seen}, "
            f"not at v{expected}.{repaired}",
            hint="Something changed the alias outside `sparktf promote`; check `sparktf models`.",
            model=registry.name,
            alias=alias,
        )
    raise RegistryError(
        f"After the promotion, alias {alias!r} of {registry.name!r} points at {seen} instead of v{expected}: "
        "it was moved by something that did not take the promotion lock. It is left there, as that version passed.",
        hint=f"Check `sparktf models`; promote again if v{expected} should be the champion.",
        model=registry.name,
        alias=alias,
    )


# --------------------------------------------------------------------------- promote


def promote_version(
    registry: ModelRegistry,
    version: int,
    evaluate_fn: EvaluateFn,
    gate: GateConfig,
    *,
    owner: str | None = None,
) -> PromotionResult:
    """Validate ``version`` against the champion and promote it if it passes.

    Args:
        registry: the registered model.
        version: the candidate version.
        evaluate_fn: ``model_uri -> metrics``; called for the candidate and for the
            champion, on the same held-out data.
        gate: the ``[gate]`` config: thresholds, alias names, lock settings.
        owner: who is promoting (for the lock and messages); default host:pid.

    Returns:
        What happened. A rejected candidate is a normal result, not an exception;
        call :meth:`PromotionResult.raise_if_rejected` to turn it into one.

    Raises:
        RegistryError: the registry failed, the champion kept moving for
            ``gate.max_attempts`` gate runs, the lock stayed busy, or the aliases did
            not read back as written.
    """
    cand = registry.get(version)
    champ_version = _champion_version(registry, gate)
    if champ_version == cand.version:
        return _result(registry, gate, cand, "already_champion", None, champ_version)
    cand_metrics = _evaluate(evaluate_fn, cand, "candidate")
    for attempt in range(1, gate.max_attempts + 1):
        champion = registry.get(champ_version) if champ_version is not None else None
        champ_metrics = _evaluate(evaluate_fn, champion, "champion") if champion else None
        report = evaluate_gate(
            cand_metrics,
            champ_metrics,
            gate.thresholds,
            min_slice_queries=gate.min_slice_queries,
            candidate_label=cand.label,
            champion_label=champion.label if champion else None,
        )
        if not report.passed:
            uri = _record(registry, cand, report, champion, attempt)
            return _result(registry, gate, cand, "rejected", report, champ_version, attempt, uri)
        with _lock(registry, gate, owner) as lock:
            now_version = _champion_version(registry, gate)
            if now_version != champ_version:
                log.warning(
                    "%s: the champion moved from %s to %s during evaluation; validating again",
                    cand.label,
                    champ_version,
                    now_version,
                )
                champ_version = now_version
                if champ_version == cand.version:
                    return _result(registry, gate, cand, "already_champion", None, champ_version, attempt)
                continue
            uri = _record(registry, cand, report, champion, attempt)
            lock.check_held()
            if champion is not None:
                registry.set_alias(gate.previous_alias, champion.version)
            lock.check_held()
            registry.set_alias(gate.champion_alias, cand.version)
            registry.set_tags(
                cand.version,
                {REPLACED_TAG: str(champion.version) if champion else "none", PROMOTED_AT_TAG: now_iso()},
            )
            verify_champion(registry, gate, cand.version, repair_to=cand.version)
            result = _result(registry, gate, cand, "promoted", report, champ_version, attempt, uri)
            previous = result.previous_after
            if champion is not None and previous != champion.version:
                raise RegistryError(
                    f"After promoting {cand.label}, alias {gate.previous_alias!r} points at v{previous}, "
                    f"not at the replaced champion v{champion.version}.",
                    hint="Something changed the alias outside `sparktf promote`; "
                    f"set it back with the MLflow UI or client if v{champion.version} should be the rollback target.",
                    model=registry.name,
                )
            return result
    raise RegistryError(
        f"The champion of {registry.name!r} moved during each of {gate.max_attempts} validations of {cand.label}; "
        "gave up without promoting it.",
        hint="Other promotions are landing continuously; run this one again, or raise gate.max_attempts.",
        model=registry.name,
        version=cand.version,
    )


# --------------------------------------------------------------------------- rollback


def rollback(registry: ModelRegistry, gate: GateConfig, *, owner: str | None = None) -> RollbackResult:
    """Move the champion back to the ``previous`` version.

    ``previous`` then moves to the version that one replaced (its
    ``replaced_version`` tag) when that version passed, and is removed otherwise.
    The version rolled back from keeps its tags and gets ``rolled_back_at`` and
    ``rolled_back_to``.

    Raises:
        RegistryError: there is no ``previous``, it did not pass, it already is the
            champion, or the registry failed.
    """
    with _lock(registry, gate, owner) as lock:
        aliases = registry.aliases()
        prev_version = aliases.get(gate.previous_alias)
        champ_version = aliases.get(gate.champion_alias)
        if prev_version is None:
            listed = ", ".join(f"v{i.version} ({i.status})" for i in registry.versions()[:10]) or "none"
            raise RegistryError(
                f"Nothing to roll back to: alias {gate.previous_alias!r} of {registry.name!r} is not set "
                f"(champion: {f'v{champ_version}' if champ_version is not None else 'none'}; versions: {listed}).",
                hint="A previous version exists only after a promotion replaced a champion.",
                model=registry.name,
            )
        prev = registry.get(prev_version)
        if prev.status != "passed":
            raise RegistryError(
                f"Alias {gate.previous_alias!r} points at {prev.label}, whose validation_status is "
                f"{prev.status!r}; only a version that passed the gate may become the champion.",
                model=registry.name,
            )
        if champ_version == prev.version:
            raise RegistryError(
                f"The champion and {gate.previous_alias!r} both point at {prev.label}; nothing to roll back.",
                model=registry.name,
            )
        lock.check_held()
        registry.set_alias(gate.champion_alias, prev.version)
        older = _rollback_target(registry, prev, exclude=champ_version)
        lock.check_held()
        if older is not None:
            registry.set_alias(gate.previous_alias, older)
        else:
            registry.delete_alias(gate.previous_alias)
        if champ_version is not None:
            registry.set_tags(champ_version, {ROLLED_BACK_AT_TAG: now_iso(), ROLLED_BACK_TO_TAG: str(prev.version)})
        verify_champion(registry, gate, prev.version, repair_to=prev.version)
        return RollbackResult(registry.name, champ_version, prev.version, older)


def _rollback_target(registry: ModelRegistry, info: VersionInfo, *, exclude: int | None) -> int | None:
    """The version ``info`` replaced, if it still exists, passed and is not ``exclude``."""
    raw = info.tags.get(REPLACED_TAG, "none")
    if not raw.isdigit() or int(raw) == exclude:
        return None
    try:
        older = registry.get(int(raw))
    except RegistryError:
        return None  # deleted since
    return older.version if older.status == "passed" else None
