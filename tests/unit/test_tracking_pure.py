from __future__ import annotations

import json

import numpy as np
import pytest

from sparktf.training.tracking import flatten_params, is_chief_from_env, metric_key, numeric_logs


def test_metric_keys_are_mlflow_safe() -> None:
    assert metric_key("ndcg@10") == "ndcg_at_10"
    assert metric_key("val_hr_at_10") == "val_hr_at_10"
    assert metric_key("factorized_top_k/top_10_categorical_accuracy") == "factorized_top_k/top_10_categorical_accuracy"
    assert metric_key("a:b(c)") == "a_b_c_"


def test_numeric_logs_keeps_numbers_and_names_the_rest() -> None:
    logs = {
        "loss": np.float32(0.5),
        "lr": 0.01,
        "n": 3,
        "arr": np.array([2.0]),
        "s": "text",
        "none": None,
        "nan": float("nan"),
        "v": [1, 2],
    }
    values, skipped = numeric_logs(logs)
    assert values == {"loss": 0.5, "lr": 0.01, "n": 3.0, "arr": 2.0}
    assert sorted(skipped) == ["nan", "none", "s", "v"]


def test_flatten_params() -> None:
    flat = flatten_params({"train": {"epochs": 3, "models": ["a", "b"]}, "workdir": "/w"})
    assert flat == {"train.epochs": "3", "train.models": '["a", "b"]', "workdir": "/w"}


@pytest.mark.parametrize(
    ("tf_config", "chief"),
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_is_chief_from_env(monkeypatch: pytest.MonkeyPatch, tf_config: dict | None, chief: bool) -> None:
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief_from_env() is chief
