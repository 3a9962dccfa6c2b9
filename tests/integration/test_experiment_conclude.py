"""``sparktf experiment conclude`` on a real MLflow registry (issue 17): the decision lands as
tags on every arm's version, and a promotion goes through the validation gate's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparktf.config import GateConfig, MetricThreshold
from sparktf.errors import RegistryError
from sparktf.experiments.conclude import apply_decision
from sparktf.registry.promote import promote_version
from sparktf.registry.registry import ModelRegistry

GATE = GateConfig(thresholds=(MetricThreshold(metric="ndcg@10", min_value=0.0, min_relative_change=-0.05),))
#: Offline metrics by version (what the gate's evaluate_fn would measure on the test split).
NDCG = {1: 0.30, 2: 0.31, 3: 0.10}


def _registry(tmp_path: Path) -> ModelRegistry:
    """A registry with one version per entry of NDCG, each from its own run (no global MLflow
    state: other tests in the process may have set an experiment or a tracking URI)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("conclude", artifact_location=(tmp_path / "artifacts").as_uri())
    registry = ModelRegistry(uri, "shop")
    registry.ensure_registered_model()
    art = tmp_path / "model"
    art.mkdir()
    (art / "weights.txt").write_text("w")
    for _ in NDCG:
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(art), "model")
        client.set_terminated(run.info.run_id)
        registry.register(f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return registry


def _evaluate(registry: ModelRegistry) -> Any:
    def evaluate(uri: str) -> dict[str, float]:
        version = int(uri.rsplit("/", 1)[1])
        return {"ndcg@10": NDCG[version]}

    return evaluate


def _report(decision: str, arm: str | None) -> dict[str, Any]:
    return {
        "experiment": "seq-vs-popular",
        "mlflow_run_id": "r1",
        "arm_models": {
            "popular": {"model": "popular", "kind": "baseline", "version": None},
            "champion": {"model": "champion", "kind": "alias", "version": 1},
            "challenger": {"model": "2", "kind": "version", "version": 2},
            "weak": {"model": "3", "kind": "version", "version": 3},
        },
        "decision": {"decision": decision, "arm": arm, "reasons": [f"because {decision}"]},
    }


@pytest.mark.slow
def test_conclude_tags_every_arm_and_promotes_through_the_gate(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    evaluate = _evaluate(registry)
    assert promote_version(registry, 1, evaluate, GATE).outcome == "promoted"

    kept = apply_decision(registry, _report("keep", None), GATE, evaluate, promote_alias="champion")
    assert kept.promotion is None and sorted(kept.tagged) == [1, 2, 3]
    assert registry.aliases()["champion"] == 1
    tags = registry.client.get_model_version("shop", "2").tags
    assert tags["experiment_decision"] == "keep" and tags["experiment_arm"] == "challenger"
    assert tags["experiment_report"] == "runs:/r1/experiment/report.json"

    done = apply_decision(registry, _report("promote", "challenger"), GATE, evaluate, promote_alias="champion")
    assert done.promotion is not None and done.promotion.outcome == "promoted"
    assert registry.aliases() == {"champion": 2, "previous": 1}  # the gate's path: previous moved too
    assert registry.client.get_model_version("shop", "2").tags["validation_status"] == "passed"

    # An online winner that fails the offline gate is not promoted: the champion stays.
    refused = apply_decision(registry, _report("promote", "weak"), GATE, evaluate, promote_alias="champion")
    assert refused.promotion is not None and refused.promotion.outcome == "rejected"
    assert registry.aliases()["champion"] == 2

    with pytest.raises(RegistryError, match="serves no registry version"):
        apply_decision(registry, _report("promote", "popular"), GATE, evaluate, promote_alias="champion")
