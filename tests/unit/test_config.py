from __future__ import annotations

import math
from pathlib import Path

import pytest

from sparktf.config import (
    Config,
    GateConfig,
    SparkConfig,
    TrainConfig,
    config_to_dict,
    config_to_toml,
    load_config,
)
from sparktf.errors import ConfigError
from sparktf.workdir import Workdir


def test_defaults_are_valid_and_frozen() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.spark.master == "local[*]"
    assert cfg.train.num_workers == 2
    with pytest.raises(AttributeError):
        cfg.train.epochs = 3  # type: ignore[misc]


def test_toml_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'workdir = "/tmp/x"\n[train]\nepochs = 4\nmodels = ["sequential"]\n[spark]\nmaster = "local[2]"\n'
        '[spark.conf]\n"spark.executor.memory" = "2g"\n'
    )
    cfg = load_config(f, ["train.epochs=7", "train.rnn=lstm", "generator.num_events=20000"])
    assert cfg.workdir == "/tmp/x"
    assert cfg.train.epochs == 7
    assert cfg.train.rnn == "lstm"
    assert cfg.train.models == ("sequential",)
    assert cfg.spark.master == "local[2]"
    assert cfg.spark.conf == {"spark.executor.memory": "2g"}
    assert cfg.generator.num_events == 20000


def test_override_of_lists_and_floats() -> None:
    cfg = load_config(overrides=["evaluation.ks=[5, 10]", "train.learning_rate=1", 'data.event_types=["a", "b"]'])
    assert cfg.evaluation.ks == (5, 10)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.data.event_types == ("a", "b")


@pytest.mark.parametrize(
    ("override", "field", "value", "allowed"),
    [
        ("train.epochs=0", "train.epochs", "0", "a positive integer"),
        ("train.epochs=many", "train.epochs", "'many'", "an integer"),
        ("train.rnn=transformer", "train.rnn", "'transformer'", "one of 'gru', 'lstm'"),
        ("spark.master=localhost", "spark.master", "'localhost'", "spark://host:port"),
        ("data.max_bad_fraction=1.5", "data.max_bad_fraction", "1.5", "between 0 and 1"),
        ("train.use_gpu=maybe", "train.use_gpu", "'maybe'", "true or false"),
        ("serve.port=70000", "serve.port", "70000", "0-65535"),
    ],
)
def test_bad_values_name_field_value_and_allowed(override: str, field: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    msg = info.value.message
    assert field in msg and value in msg and allowed in msg


def test_unknown_field_and_section() -> None:
    with pytest.raises(ConfigError, match="unknown field 'epoch'.*epochs"):
        load_config(overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match="'trainer' is not a config section"):
        load_config(overrides=["trainer.epochs=3"])
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(overrides=["train.epochs"])


def test_unknown_field_in_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match=r"Unknown field 'epoch' in \[train\]"):
        load_config(f)


def test_missing_and_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="spark.shuffle_partitions"):
        SparkConfig(shuffle_partitions=-1)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="data.path"):
        load_config(overrides=["data.source=path"])
    with pytest.raises(ConfigError, match="features.time_cutoff"):
        load_config(overrides=["features.split=time"])
    # The recency weights act on the repeat term's buckets: without them there is nothing to weigh.
    with pytest.raises(ConfigError, match="train.repeat_recent"):
        load_config(overrides=["train.repeat_recent=4"])
    assert load_config(overrides=["train.repeat_recent=4", "train.repeat_buckets=8"]).train.repeat_recent == 4
    with pytest.raises(ConfigError, match="train.calibrate_taste"):
        load_config(overrides=["train.calibrate_taste=true"])
    assert load_config(overrides=["train.calibrate_taste=true", "train.repeat_buckets=8"]).train.calibrate_taste
    with pytest.raises(ConfigError, match="train.weight_decay"):
        load_config(overrides=["train.weight_decay=-0.1"])


def test_gate_thresholds_as_array_of_tables(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text(
        '[[gate.thresholds]]\nmetric = "ndcg@10"\nmin_value = 0.05\nmin_absolute_change = 0.001\n'
        '[[gate.thresholds]]\nmetric = "hr@10"\nslice = "user_activity"\nmin_relative_change = -0.05\n'
    )
    cfg = load_config(f)
    assert len(cfg.gate.thresholds) == 2
    assert cfg.gate.thresholds[0].min_value == 0.05
    assert cfg.gate.thresholds[1].slice == "user_activity"
    assert math.isnan(cfg.gate.thresholds[1].min_value)
    assert isinstance(GateConfig().thresholds, tuple)


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(overrides=["train.epochs=3", 'spark.conf={"spark.x" = "1"}', "workdir=/tmp/w"])
    f = tmp_path / "rt.toml"
    f.write_text(config_to_toml(cfg))
    back = load_config(f)
    assert config_to_dict(back) == config_to_dict(cfg) or _nan_equal(config_to_dict(back), config_to_dict(cfg))


def _nan_equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_workdir_layout_and_tracking_uri(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f'workdir="{tmp_path}/run1"'])
    assert cfg.paths.root == str(tmp_path / "run1")
    for p in (cfg.paths.events, cfg.paths.quarantine, cfg.paths.tfrecords, cfg.paths.checkpoints, cfg.paths.index):
        assert p.startswith(cfg.paths.root + "/")
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/run1/mlflow.db"


def test_remote_workdir_needs_a_tracking_server() -> None:
    w = Workdir("hdfs://nn:8020/runs/a")
    assert not w.is_local and w.events == "hdfs://nn:8020/runs/a/data/events"
    cfg = load_config(overrides=['workdir="s3a://bucket/run"'])
    with pytest.raises(ConfigError, match="tracking.tracking_uri"):
        _ = cfg.tracking_uri
    cfg2 = load_config(overrides=['workdir="s3a://bucket/run"', 'tracking.tracking_uri="http://mlflow:5000"'])
    assert cfg2.tracking_uri == "http://mlflow:5000"
