"""``sparktf experiment conclude``: an experiment's decision applied to the registry.

Every arm that serves a registry version gets the decision on its version as tags
(``experiment``, ``experiment_arm``, ``experiment_decision``, ``experiment_reason``,
``experiment_report``), so the registry's audit trail says what the experiment concluded
about it. A ``promote`` then goes through :func:`sparktf.registry.promote.promote_version`:
the validation gate's lock, its compare-and-set of the aliases, its report and tags. The
online winner is still checked offline against the champion it replaces, so an experiment
cannot put a model that fails the gate into production.

Why our own code: the decision rule is ours (:func:`sparktf.experiments.report.decide`),
and the promotion path it must share is sparktf's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sparktf.config import GateConfig
from sparktf.errors import RegistryError
from sparktf.registry.promote import EvaluateFn, PromotionResult, promote_version
from sparktf.registry.registry import ModelRegistry

__all__ = ["Concluded", "apply_decision"]


@dataclass(frozen=True)
class Concluded:
    """What ``conclude`` did.

    Attributes:
        decision: ``promote``, ``keep`` or ``stop``.
        arm: the arm the decision names, if any.
        tagged: the versions that got the experiment's tags.
        promotion: the promotion's result (``promote`` only).
    """

    decision: str
    arm: str | None
    tagged: tuple[int, ...]
    promotion: PromotionResult | None = None

    def message(self) -> str:
        if self.promotion is not None:
            return f"promote {self.arm}: {self.promotion.message()}"
        return f"{self.decision}" + (f" ({self.arm})" if self.arm else "") + ": nothing moved in the registry."


def apply_decision(
    registry: ModelRegistry,
    report: Mapping[str, Any],
    gate: GateConfig,
    evaluate: EvaluateFn,
    *,
    promote_alias: str,
) -> Concluded:
    """Tag the arms' versions with the decision of ``report``, then promote its winner.

    Args:
        registry: the registered model the arms' versions belong to.
        report: an experiment report (:func:`sparktf.experiments.report.arm_results` plus
            ``arm_models``, ``decision`` and ``mlflow_run_id``).
        gate: ``[gate]``: the promotion's thresholds, lock and alias names.
        evaluate: the gate's ``model_uri -> metrics`` (offline evaluation).
        promote_alias: the alias the winner gets (``gate.champion_alias`` normally).

    Raises:
        RegistryError: ``promote`` names an arm without a registry version, or the
            registry failed. A gate rejection is returned in ``promotion``, not raised.
    """
    decision = report["decision"]
    reasons = "; ".join(decision.get("reasons", []))
    stamp = {
        "experiment": str(report["experiment"]),
        "experiment_decision": str(decision["decision"]),
        "experiment_reason": reasons[:4000],
        "experiment_report": f"runs:/{report.get('mlflow_run_id') or '?'}/experiment/report.json",
    }
    tagged = []
    for arm, info in report["arm_models"].items():
        if info.get("version") is not None:
            registry.set_tags(int(info["version"]), {**stamp, "experiment_arm": arm})
            tagged.append(int(info["version"]))
    if decision["decision"] != "promote":
        return Concluded(decision["decision"], decision.get("arm"), tuple(tagged))
    arm = decision["arm"]
    version = report["arm_models"].get(arm, {}).get("version")
    if version is None:
        raise RegistryError(
            f"Arm {arm!r} won, but it serves no registry version of {registry.name!r}, so there is nothing to promote.",
            hint="Check the arm's model (`sparktf models` lists the versions and aliases).",
            model=registry.name,
        )
    if promote_alias != gate.champion_alias:
        gate = replace(gate, champion_alias=promote_alias)
    result = promote_version(registry, int(version), evaluate, gate)
    return Concluded("promote", arm, tuple(tagged), result)
