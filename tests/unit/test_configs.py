"""The data sets' config files under configs/ load as they are (the README and BENCHMARKS.md tell
users to type `sparktf run --config configs/<data>.toml` and `sparktf tune --config ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparktf.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_there_is_one_config_per_real_data_set() -> None:
    assert {p.stem for p in CONFIGS} == {"movielens", "instacart"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_data_set_config_loads_and_says_what_it_is(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.source == path.stem
    # Groceries are rebought: their product protocol must not exclude seen items (issue 20).
    assert cfg.evaluation.exclude_seen is (path.stem != "instacart")
    assert cfg.tune.model in cfg.train.models
    # Both learn whether shoppers come back (models/repeat.py) instead of masking the history.
    assert cfg.train.repeat_buckets > 0 and not cfg.train.mask_history
