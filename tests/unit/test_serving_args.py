"""`sparktf serve`'s configuration turned into the server's arguments (pure; no server)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from sparktf.config import load_config
from sparktf.serving.monitor import ServedMonitoring
from sparktf.stages._online import event_rules
from sparktf.stages.serve import ServeArgs, serve_args


def test_the_default_model_is_the_alias_the_gate_moves(tmp_path: Path) -> None:
    """A run whose gate promotes to @production must serve @production: a hard-coded
    @champion would serve a version nobody promoted (or none at all)."""
    cfg = load_config(
        overrides=[
            f"workdir={str(tmp_path)!r}",
            "gate.champion_alias=production",
            "tracking.registered_model=shop-recs",
        ]
    )
    assert serve_args(cfg, None).model == "models:/shop-recs@production"
    assert serve_args(cfg, "").model == "models:/shop-recs@production"
    assert serve_args(load_config(overrides=[f"workdir={str(tmp_path)!r}"]), None).model == (
        "models:/sparktf-recommender@champion"
    )


def test_model_and_serve_paths_given_arrive_unchanged(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            f"workdir={str(tmp_path / 'work')!r}",
            f"serve.features_path={str(tmp_path / 'feats')!r}",
            f"serve.index_path={str(tmp_path / 'idx')!r}",
            "serve.port=9123",
            "tracking.tracking_uri='http://mlflow:5000'",
        ]
    )
    args = serve_args(cfg, "/models/recsys")
    assert args == ServeArgs(
        settings=cfg.serve,
        model="/models/recsys",
        tracking_uri="http://mlflow:5000",
        features_path=str(tmp_path / "feats"),
        index_path=str(tmp_path / "idx"),
        cache_dir=str(tmp_path / "work" / "state" / "serving-cache"),
        events=event_rules(cfg),
        landing_dir=str(tmp_path / "work" / "data" / "landing"),
        online=cfg.online,
        online_path=str(tmp_path / "work" / "online" / "online.db"),
        experiment=None,
        experiment_dir="",
        monitoring=ServedMonitoring.from_config(cfg.monitoring, report_dir=str(tmp_path / "work" / "monitoring")),
    )
    assert args.settings.port == 9123


def test_workdir_defaults_for_a_local_and_a_remote_workdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    local = serve_args(load_config(overrides=[f"workdir={str(work)!r}"]), None)
    assert local.features_path == str(work / "data" / "features")
    assert local.index_path == ""  # no <workdir>/index yet: each version's own index/, or an exact one
    assert local.tracking_uri == f"sqlite:///{work / 'mlflow.db'}"
    (work / "index").mkdir(parents=True)
    assert serve_args(load_config(overrides=[f"workdir={str(work)!r}"]), None).index_path == str(work / "index")
    remote = serve_args(
        load_config(overrides=["workdir='s3a://bucket/run'", "tracking.tracking_uri='http://mlflow:5000'"]), None
    )
    # Nothing local to read; registry versions go to a temporary directory made at start-up.
    assert (remote.features_path, remote.index_path, remote.cache_dir) == ("", "", "")
    # Nowhere local to make events durable or to find the stream's SQLite store either.
    assert (remote.landing_dir, remote.online_path) == ("", "")
    shared = serve_args(
        load_config(
            overrides=[
                "workdir='s3a://bucket/run'",
                "tracking.tracking_uri='http://mlflow:5000'",
                "online.store='redis'",
                "online.redis_url='redis://127.0.0.1:6379/0'",
            ]
        ),
        None,
    )
    assert shared.online.store == "redis"  # a remote workdir can still read a shared store


def test_the_arguments_are_exactly_the_servers_keywords() -> None:
    """run_serve passes every field as a keyword: the two must not drift apart."""
    from sparktf.serving.server import build_app, serve

    fields = [f.name for f in dataclasses.fields(ServeArgs)]
    for fn in (serve, build_app):
        assert list(inspect.signature(fn).parameters) == fields


def test_a_deleted_tracking_store_is_an_error_not_a_fresh_empty_one(tmp_path: Path) -> None:
    """Issue 15: `sparktf serve` on a workdir whose mlflow.db was deleted used to create
    an empty store and wait for a champion that no longer exists."""
    import pytest

    from sparktf.errors import ServingError
    from sparktf.serving.server import build_app

    cfg = load_config(overrides=[f"workdir={str(tmp_path / 'work')!r}"])
    args = serve_args(cfg, None)
    with pytest.raises(ServingError, match="There is no MLflow store at .*mlflow.db"):
        build_app(
            args.settings,
            model=args.model,
            tracking_uri=args.tracking_uri,
            features_path=args.features_path,
            index_path=args.index_path,
            cache_dir=str(tmp_path / "cache"),
        )
    assert not (tmp_path / "work" / "mlflow.db").exists()


def test_the_start_up_line_says_where_events_land_and_live_histories_come_from(tmp_path: Path) -> None:
    from sparktf.config import OnlineConfig, ServeConfig
    from sparktf.serving.server import _online_line

    on, off = ServeConfig(), ServeConfig(live_history=False)
    db = str(tmp_path / "online.db")
    assert _online_line(on, "/w/data/landing", OnlineConfig(), db) == (
        f"sparktf serve: events land in /w/data/landing; live histories from sqlite {db}"
    )
    assert "live histories off" in _online_line(off, "/w/data/landing", OnlineConfig(), db)
    remote = _online_line(on, "", OnlineConfig(), "")
    assert "no event collection" in remote and "no live histories" in remote
    assert _online_line(on, "", OnlineConfig(store="redis", redis_url="redis://h:1/0"), "").endswith("from redis")
