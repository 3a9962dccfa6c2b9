"""The pipeline's ``register`` stage and ``sparktf promote`` on real Spark features.

A tiny features directory (the data contract's ``vocab/items``, ``examples``,
``seen``, ``stats.json``) and a real exported model logged to the workdir's SQLite
store stand in for the earlier stages; the stage's evaluator reads the test split
with Spark and scores the model over the full catalogue.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from sparktf.errors import ValidationGateError

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ITEMS = [f"i{i}" for i in range(12)]
USERS = [f"u{u}" for u in range(24)]


def _write_features(spark: Any, root: Path) -> None:
    from pyspark.sql import Row

    spark.createDataFrame([Row(item_id=item, index=i + 1, count=30 - i) for i, item in enumerate(ITEMS)]).write.parquet(
        str(root / "vocab" / "items")
    )
    spark.createDataFrame([Row(user_id=u, index=i + 1, count=5) for i, u in enumerate(USERS)]).write.parquet(
        str(root / "vocab" / "users")
    )
    examples, seen = [], []
    for n, user in enumerate(USERS):
        seq = [ITEMS[(n + k) % len(ITEMS)] for k in range(5)]
        activity = ("low", "mid", "high")[n % 3]
        for split, pos in (("train", 2), ("validation", 3), ("test", 4)):
            examples.append(
                Row(
                    user_id=user,
                    history=seq[:pos],
                    history_len=pos,
                    target=seq[pos],
                    target_category=f"c{n % 2}",
                    user_activity=activity,
                    split=split,
                )
            )
        seen.append(Row(user_id=user, items=seq[:3]))
    spark.createDataFrame(examples).write.partitionBy("split").parquet(str(root / "examples"))
    spark.createDataFrame(seen).write.parquet(str(root / "seen"))
    (root / "stats.json").write_text(json.dumps({"examples": {"train": 24, "validation": 24, "test": 24}}))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> str:
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model
    from sparktf.models.factory import build_model

    model = build_model(Catalog.from_arrays(ITEMS, user_ids=USERS), ModelParams(kind="sequential", embedding_dim=8))
    return export_model(model, str(tmp_path_factory.mktemp("export")), 1, k=5)


def _trained(cfg: Any, export: str) -> Any:
    """What the train stage leaves behind: a run with the logged model, and state/train.json."""
    from sparktf.stages.state import TrainedModel, TrainResult, write_result
    from sparktf.training.tracking import RunTracker

    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, cfg.paths.mlflow_artifacts)
    run_id = tracker.start("sequential")
    info = TrainedModel(
        kind="sequential",
        run_id=run_id,
        export_path=export,
        model_uri=tracker.log_model(export, "sequential"),
        version=1,
        epochs_run=1,
        final_metrics={},
        examples_per_second=0.0,
        workers=0,
        restarts=0,
    )
    tracker.end()
    write_result(cfg.paths, TrainResult(models=(info,)))
    return info


def test_register_stage_promotes_then_rejects_and_cli_promotes(
    spark: Any, tmp_path: Path, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparktf.cli import main
    from sparktf.config import load_config
    from sparktf.registry.registry import ModelRegistry
    from sparktf.stages import register
    from sparktf.stages._evaluation import eval_args
    from sparktf.stages.state import RegisterResult, read_result

    overrides = [
        f"workdir={tmp_path / 'work'}",
        "spark.master=local[2]",
        "train.models=['sequential']",
        "evaluation.ks=[1, 5]",
        "gate.thresholds=[{metric='ndcg@5', min_value=0.0}, "
        "{metric='ndcg@5', slice='user_activity', min_relative_change=-0.05}]",
    ]
    cfg = load_config(overrides=overrides)
    _write_features(spark, Path(cfg.paths.features))

    # First model: no champion, the floors apply, it is registered with its metrics and promoted.
    first = _trained(cfg, export)
    out = register.run(cfg)
    assert [(v.model, v.version, v.outcome) for v in out.versions] == [("sequential", 1, "promoted")]
    assert (out.champion, out.previous) == (1, None)
    registry = ModelRegistry(cfg.tracking_uri, cfg.tracking.registered_model)
    v1 = registry.get(1)
    measured = register.catalogue_evaluator(spark, eval_args(cfg), tracking_uri=cfg.tracking_uri)(first.model_uri)
    assert v1.metrics["ndcg@5"] == pytest.approx(measured.overall["ndcg@5"])
    assert set(measured.slices["user_activity"]) == {"low", "mid", "high"}
    assert v1.tags["data_fingerprint"] == register.data_fingerprint(cfg.paths.features) != "unknown"
    assert v1.run_id == first.run_id and v1.artifact("vocab")

    # Retrained to the same quality, against a gate that demands a 50% gain: rejected, champion kept.
    demanding = cfg.replace(
        gate=load_config(overrides=["gate.thresholds=[{metric='ndcg@5', min_relative_change=0.5}]"]).gate
    )
    _trained(demanding, export)
    with pytest.raises(ValidationGateError, match=r"ndcg@5 \[overall\] min_relative_change") as info:
        register.run(demanding)
    assert "champion is unchanged (v1)" in str(info.value)
    assert registry.aliases() == {"champion": 1} and registry.get(2).status == "failed"
    rejected = read_result(cfg.paths, RegisterResult).versions[0]
    assert rejected.outcome == "rejected" and rejected.failed_checks[0]["observed"] == pytest.approx(0.0)

    # `sparktf promote --version 2` with the config's own gate (no gain needed) promotes it.
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["promote", "--version", "2", *[a for o in overrides for a in ("--set", o)]]) == 0
    assert registry.aliases() == {"champion": 2, "previous": 1}


def test_evaluate_stage_measures_what_the_gate_measures(spark: Any, tmp_path: Path, export: str) -> None:
    """Issue 14: the evaluate stage hard-coded the test split and the default popularity
    shares while the gate read the configured ones; now both read ``[evaluation]``."""
    from sparktf.config import load_config
    from sparktf.evaluation.metrics import EvaluationResult
    from sparktf.stages import evaluate, register
    from sparktf.stages._evaluation import eval_args

    cfg = load_config(
        overrides=[
            f"workdir={tmp_path / 'work'}",
            "spark.master=local[2]",
            "train.models=['sequential']",
            "evaluation.ks=[1, 5]",
            "evaluation.split=validation",
            "evaluation.popularity_shares=[0.2, 0.4]",
            "evaluation.baselines=['most_popular']",
        ]
    )
    _write_features(spark, Path(cfg.paths.features))
    trained = _trained(cfg, export)
    out = evaluate.run(cfg)
    assert out.split == "validation"
    table = EvaluationResult.from_dict(out.results["sequential"])
    assert table.protocol.split == "validation"
    gate = register.catalogue_evaluator(spark, eval_args(cfg), tracking_uri=cfg.tracking_uri)(trained.model_uri)
    # The same queries, slices and numbers as the gate's evaluation of the same model.
    assert table.overall == pytest.approx(gate.overall)
    assert table.slices["target_popularity"] == gate.slices["target_popularity"]
    # And the configured shares are the ones used: the default ones cut other slices.
    default_shares = evaluate.run(
        cfg.replace(evaluation=dataclasses.replace(cfg.evaluation, popularity_shares=(0.5, 0.8)))
    )
    other = EvaluationResult.from_dict(default_shares.results["sequential"])
    assert other.slices["target_popularity"] != table.slices["target_popularity"]

    # Issue 20: both protocols, each labelled; nothing is excluded under the literature
    # protocol, so no model or baseline ranks its target higher there.
    literature = EvaluationResult.from_dict(out.literature["sequential"])
    assert (table.protocol.name, literature.protocol.name) == ("product", "literature")
    assert table.protocol.exclude_seen and not literature.protocol.exclude_seen
    assert table.protocol.sentence().startswith("Product protocol:")
    assert literature.protocol.sentence().startswith("Literature protocol:")
    for name in out.results:
        lit, prod = out.literature[name]["overall"], out.results[name]["overall"]
        assert lit["hr@5"] <= prod["hr@5"] + 1e-12 and lit["mrr"] <= prod["mrr"] + 1e-12, name
    # gate.protocol reaches the gate: it now measures the literature numbers.
    lit_cfg = cfg.replace(gate=dataclasses.replace(cfg.gate, protocol="literature"))
    lit_gate = register.catalogue_evaluator(spark, eval_args(lit_cfg), tracking_uri=cfg.tracking_uri)(trained.model_uri)
    assert lit_gate.overall == pytest.approx(literature.overall)
    assert lit_gate.overall != pytest.approx(table.overall)
