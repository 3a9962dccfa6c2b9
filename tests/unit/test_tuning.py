"""`sparktf tune`'s pure parts: the search space, the arguments read from `[tune]`, and the best
settings written as a config file that `sparktf run --config` reads back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from sparktf.config import TrainConfig, config_to_toml, load_config
from sparktf.stages.tune import best_config, best_config_text, trial_config, tune_args
from sparktf.tuning.space import KINDS, search_space, suggest
from sparktf.tuning.study import StudyResult, TrialRecord


@pytest.mark.parametrize("kind", KINDS)
def test_every_draw_of_the_space_is_a_valid_train_section(kind: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, kind)
        assert set(params) <= fields and params == trial.params
        train = dataclasses.replace(TrainConfig(), **params)  # runs the section's checks
        assert train.embedding_dim % train.attention_heads == 0
        study.tell(trial, 0.0)
    # The defaults of [train] lie inside the space, so the search can only confirm or beat them
    # (but sasrec's batch: its rows are windows of max_history positions, see tuning/space.py).
    default = TrainConfig()
    for p in search_space(kind):
        if (kind, p.name) == ("sasrec", "batch_size"):
            assert max(p.choices) < default.batch_size
            continue
        value = getattr(default, p.name)
        assert value in p.choices if p.kind == "choice" else p.low <= value <= p.high, p


def test_tune_args_read_every_tune_field(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            f"workdir={tmp_path}",
            "spark.master=local[4]",
            "tune.model=two_tower",
            "tune.trials=7",
            "tune.parallelism=2",
            "tune.timeout_s=60",
            "tune.epochs=3",
            "tune.pruner_warmup_epochs=1",
            "tune.seed=5",
        ]
    )
    args = tune_args(cfg)
    assert (args.kind, args.trials, args.parallelism, args.timeout_s) == ("two_tower", 7, 2, 60.0)
    assert (args.epochs, args.pruner_warmup_epochs, args.seed) == (3, 1, 5)
    assert args.output == str(tmp_path / "tune" / "best.toml")
    assert args.storage_url == f"sqlite:///{tmp_path / 'tune' / 'optuna.db'}"
    assert args.threads_per_trial == 2  # local[4] shared by 2 trials
    assert tune_args(cfg.replace(tune=dataclasses.replace(cfg.tune, output="x/best.toml"))).output == str(
        Path("x/best.toml").resolve()
    )


@pytest.mark.parametrize("budget_cut", [False, True])
def test_best_config_round_trips_into_the_trials_training_without_secrets(tmp_path: Path, budget_cut: bool) -> None:
    cfg = load_config(
        overrides=[
            f"workdir={tmp_path / 'work'}",
            "data.source=movielens",
            "tune.model=sasrec",
            "tune.epochs=9",
            'serve.auth_token="s3cret-token"',
            'online.redis_url="redis://:pw@localhost:6379/0"',
        ]
    )
    params = {
        "learning_rate": 0.0021,
        "embedding_dim": 128,
        "dropout": 0.45,
        "batch_size": 256,
        "attention_blocks": 3,
        "attention_heads": 2,
    }
    best = TrialRecord(3, "complete", params, 0.1234, 4 if budget_cut else 7, 12.0, budget_cut=budget_cut)
    study = StudyResult("sasrec-x", "sqlite:///x", "sasrec", "val_ndcg_at_10", (best,), best, 30.0, "done")
    args = tune_args(cfg)
    best_cfg, removed = best_config(cfg, best, args)
    assert sorted(removed) == ["online.redis_url", "serve.auth_token"]
    path = tmp_path / "best.toml"
    text = best_config_text(best_cfg, best, study, str(path), removed)
    path.write_text(text)
    assert "s3cret-token" not in text and "pw@" not in text and "<redacted>" not in text
    assert f"sparktf run --config {path}" in text

    back = load_config(path)
    assert back.train.models == ("sasrec",)
    assert {k: getattr(back.train, k) for k in params} == params
    assert back.train.epochs == (4 if budget_cut else 9)
    assert back.serve.auth_token == "" and back.online.redis_url == ""
    # Everything else is the effective config the study ran with (compared as TOML: the
    # gate's thresholds hold NaNs, which are never equal).
    assert back.workdir == cfg.paths.root and back.data.source == "movielens"
    expected = trial_config(cfg, "sasrec", params, back.train.epochs).replace(serve=back.serve, online=back.online)
    assert config_to_toml(back) == config_to_toml(expected)
