"""The ``[gate]`` section: TOML thresholds, and the values it refuses (with the reason)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sparktf.config import GateConfig, MetricThreshold, config_to_toml, load_config
from sparktf.errors import ConfigError
from sparktf.registry.gate import evaluate_gate


def test_thresholds_from_toml_drive_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(
        "[gate]\nmin_slice_queries = 20\nmax_attempts = 5\n"
        '[[gate.thresholds]]\nmetric = "ndcg@10"\nmin_value = 0.05\nmin_absolute_change = 0.0\n'
        '[[gate.thresholds]]\nmetric = "ndcg@10"\nslice = "user_activity"\nmin_relative_change = -0.1\n'
        '[[gate.thresholds]]\nmetric = "latency_ms"\nhigher_is_better = false\nmin_value = 50\n'
    )
    cfg = load_config(path)
    assert cfg.gate.min_slice_queries == 20 and cfg.gate.max_attempts == 5
    assert [t.metric for t in cfg.gate.thresholds] == ["ndcg@10", "ndcg@10", "latency_ms"]
    assert load_config(None, [f"workdir={tmp_path}"]).gate.thresholds != cfg.gate.thresholds
    report = evaluate_gate(
        {"overall": {"ndcg@10": 0.2, "latency_ms": 80.0}, "slices": {"user_activity": {"low": {"ndcg@10": 0.1}}}},
        None,
        cfg.gate.thresholds,
    )
    assert [(c.metric, c.status) for c in report.failed_checks] == [("latency_ms", "failed")]
    # nan (no bound) != nan, so compare the renderings.
    assert config_to_toml(load_config(_write(tmp_path, config_to_toml(cfg)))) == config_to_toml(cfg)


def _write(tmp_path: Path, text: str) -> Path:
    out = tmp_path / "roundtrip.toml"
    out.write_text(text)
    return out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gate.champion_alias=latest", "MLflow reserves"),
        ("gate.previous_alias=v3", "MLflow reserves"),
        ("gate.previous_alias=champion", "other than gate.champion_alias"),
        ("gate.thresholds=[]", "at least one"),
        ("gate.min_slice_queries=-1", r"0 \(check every slice\)"),
        ("gate.lock_ttl_seconds=0.5", "between 1 and 86,400"),
        ("gate.max_attempts=0", "between 1 and 100"),
    ],
)
def test_bad_gate_values_say_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=[override])
    assert override.split("=")[0] in str(info.value)


def test_a_threshold_must_bound_something_and_stay_finite() -> None:
    with pytest.raises(ConfigError, match="checks nothing"):
        MetricThreshold(metric="hr@10")
    with pytest.raises(ConfigError, match="min_relative_change = -1.0.*above -1"):
        MetricThreshold(metric="hr@10", min_relative_change=-1.0)
    with pytest.raises(ConfigError, match="finite"):
        MetricThreshold(metric="hr@10", min_value=math.inf)


def test_default_gate_has_floors_changes_and_a_slice_check() -> None:
    gate = GateConfig()
    assert any(t.slice == "user_activity" for t in gate.thresholds)
    assert all(not math.isnan(t.min_value) for t in gate.thresholds if not t.slice)
    assert gate.champion_alias == "champion" and gate.previous_alias == "previous"
