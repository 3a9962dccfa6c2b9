"""An online experiment end to end on real parts (issue 17): the server splits users between
arms and logs impressions, the simulator's shoppers click over HTTP, the streaming job
validates every event, and the report (Spark) recovers the shoppers' true CTR per arm.

Arms: ``popular`` and ``cooccurrence`` baselines over the generator's items and a model
version (a tiny untrained export whose ids overlap the generator's; it checks that a model
arm is served from its repository label). Every arm's true CTR is known from the simulated
shoppers' probabilities.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import Config
from tests.integration.serving_support import RunningServer, export_recommender
from tests.integration.test_stream import _run_once

pytestmark = [pytest.mark.spark, pytest.mark.slow]

WORLD = {
    "num_events": 20_000,
    "num_users": 1_500,
    "num_items": 200,
    "num_categories": 6,
    "num_brands": 12,
    "days": 4,
}


def _cfg(work: Path, **experiment: Any) -> Config:
    from sparktf.config import load_config

    sets = [f'workdir="{work}"', 'spark.master="local[2]"', "spark.ui=false", 'spark.driver_memory="1g"']
    sets += [f"generator.{k}={v}" for k, v in WORLD.items()]
    sets += ['experiment.name="it"', "experiment.min_users_per_arm=20"]
    sets += [f"experiment.{k}={v}" for k, v in experiment.items()]
    # Two arms explore: the control by Plackett-Luce over all its allowed items (nearly flat, rank-
    # based: a baseline has no scores), the model epsilon-greedy over its top 40; their logs
    # estimate the model's deterministic ranking off-policy. The cooc arm ranks deterministically.
    arms = (
        '[{name="control", model="popular", exploration="plackett_luce", temperature=3.0, candidates=200}, '
        '{name="cooc", model="cooccurrence"}, '
        '{name="model", model="1", exploration="epsilon_greedy", epsilon=0.5, candidates=40}]'
    )
    sets.append(f"experiment.arms={arms}")
    return load_config(None, sets)


def _world_features(cfg: Config, path: Path) -> None:
    """The features tables of the generator's world: items by popularity and train examples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparktf.data.generator import build_catalog, simulate_block

    gen = cfg.generator
    cat = build_catalog(gen)
    order = np.argsort(-cat.popularity, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, order.size + 1)
    (path / "items").mkdir(parents=True)
    pq.write_table(
        pa.table({"item_id": [f"i{i}" for i in range(cat.num_items)], "popularity_rank": rank.tolist()}),
        path / "items" / "part-0.parquet",
    )
    sim = simulate_block(gen, 0)
    rows = []
    for u in np.unique(sim.user)[:400]:
        seq = [f"i{i}" for i in sim.item[sim.user == u][:12]]
        rows += [
            {"user_id": f"u{u}", "history": seq[:t], "target": seq[t], "event_time": t} for t in range(1, len(seq))
        ]
    (path / "examples" / "split=train").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), path / "examples" / "split=train" / "part-0.parquet")


def test_an_experiment_recovers_each_arms_true_ctr(spark: Any, tmp_path: Path) -> None:
    import httpx

    from sparktf.experiments.simulator import HttpShop, ShopperSimulator
    from sparktf.serving.server import build_app
    from sparktf.stages.experiment import run_report
    from sparktf.stages.serve import serve_args

    cfg = _cfg(tmp_path / "work")
    features = tmp_path / "features"
    _world_features(cfg, features)
    base = tmp_path / "models" / "recommender"
    export_recommender(base, 1, seed=3)
    args = serve_args(cfg, str(base))
    app, _ = build_app(
        args.settings,
        model=str(base),
        tracking_uri="",
        features_path=str(features),
        index_path="",
        cache_dir=str(tmp_path / "cache"),
        events=args.events,
        landing_dir=args.landing_dir,
        online=args.online,
        online_path=args.online_path,
        experiment=args.experiment,
        experiment_dir=args.experiment_dir,
    )
    with RunningServer(app) as srv:
        url = f"{srv.url}/v1/models/recommender:recommend"
        # Every reply names its experiment, arm and request; a user keeps their arm.
        first = [httpx.post(url, json={"user_id": "u7", "k": 5}) for _ in range(3)]
        assert {r.json()["arm"] for r in first} == {first[0].json()["arm"]}
        reply = first[0].json()
        assert reply["experiment"] == "it" and reply["request_id"] and reply["impressions_logged"] is True
        assert first[0].headers["X-Experiment-Arm"] == reply["arm"]
        assert args.experiment is not None and reply["arm"] == args.experiment.arm_for("u7").name
        anonymous = httpx.post(url, json={"session_id": "s-1", "k": 3}).json()
        assert anonymous["arm"] == args.experiment.arm_for("anonymous:s-1").name
        outside = httpx.post(url, json={"history": ["i1"], "k": 3}).json()  # no unit: not in the experiment
        assert outside["experiment"] is None and outside["arm"] is None
        # An exploring arm logs each shown item's probability, never shows a seen item, and says its policy.
        explorer = next(u for u in (f"u{i}" for i in range(5000)) if args.experiment.arm_for(u).name == "control")
        explored = httpx.post(url, json={"user_id": explorer, "history": ["i1", "i2"], "k": 6}).json()
        assert explored["policy"] == "plackett_luce(temperature=3,candidates=200)"
        props = [x["propensity"] for x in explored["items"]]
        assert len(props) == 6 and all(0 < p < 1 for p in props), props
        assert not {"i1", "i2"} & {x["item_id"] for x in explored["items"]}
        by_model = next(a.name for a in args.experiment.arms if a.model.kind == "version")
        user = next(u for u in (f"u{i}" for i in range(5000)) if args.experiment.arm_for(u).name == by_model)
        assert httpx.post(url, json={"user_id": user, "k": 3}).json()["model_version"] == "1"
        cooc = next(u for u in (f"u{i}" for i in range(5000)) if args.experiment.arm_for(u).name == "cooc")
        deterministic = httpx.post(url, json={"user_id": cooc, "history": ["i3"], "k": 3}).json()
        assert deterministic["policy"] == "none"
        assert [x["propensity"] for x in deterministic["items"]] == [1.0, 1.0, 1.0]

        sim = ShopperSimulator(cfg.generator, seed=11, k=10, position_bias=1.0, steps_per_session=4.0, users=1500)
        result = sim.run(lambda: HttpShop(srv.url, "recommender"), duration_s=12, rate=40, concurrency=4)
        assert result.failed_requests == 0 and result.failed_posts == 0, result.errors[:3]
        assert result.events_rejected == 0
        _run_once(spark, cfg)
        live_cfg = cfg.replace(serve=cfg.serve.__class__(**{**cfg.serve.__dict__, "port": srv.port}))
        report = shown = run_report(live_cfg, _Quiet())
        # The page's data: the arms and the report just written, and its chart.
        page = httpx.get(f"{srv.url}/v1/experiment").json()
        assert [a["name"] for a in page["arms"]] == ["control", "cooc", "model"]
        assert page["report"]["arms"]["cooc"]["clicks"] == shown["arms"]["cooc"]["clicks"]
        chart = httpx.get(f"{srv.url}/v1/experiment/ctr.png")
        assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"

    arms = report["arms"]
    # Nothing lost, nothing counted twice: every impression and click the shoppers saw is in the table.
    # plus the checks above: u7 3 × 5, the anonymous session 3, the explorer 6, the model arm's user 3,
    # the cooc arm's user 3 (the request without a unit is outside the experiment and logs none).
    sent_impressions = sum(t.impressions for t in result.arms.values()) + 5 * 3 + 3 + 6 + 3 + 3
    assert sum(a["impressions"] for a in arms.values()) == sent_impressions
    for name, tally in result.arms.items():
        assert arms[name]["clicks"] == tally.clicks, name
        assert arms[name]["carts"] == tally.carts and arms[name]["purchases"] == tally.purchases
    # Each arm's CTR is its true CTR (from the shoppers' known probabilities) within the report's
    # standard error: 3.29 SE (a 99.9% interval), so that three arms of one run fail together with
    # ~0.3% chance; the nominal 95% coverage over seeded repeats is tests/unit/test_experiment_truth.py's.
    # An arm without a single click (the untrained model's expected clicks are below one) is
    # checked by its count instead: zero clicks is unlikely (p < 0.0005) above 7.6 expected.
    for name in ("control", "cooc", "model"):
        ctr = arms[name]["rates"]["ctr"]
        truth = result.arms[name].true_ctr
        if arms[name]["clicks"] == 0:
            assert truth * arms[name]["impressions"] <= 7.6, (name, truth, ctr)
            assert ctr["ci_low"] == 0.0 and ctr["ci_high"] > 0.0
        else:
            assert abs(ctr["value"] - truth) <= 3.29 * ctr["se"], (name, truth, ctr)
    assert report["sample_ratio"]["p_value"] > 0.001 and report["users_in_several_arms"] == 0
    assert arms["cooc"]["guardrail"]["error_rate"] == 0.0 and arms["cooc"]["guardrail"]["p99_latency_ms"] > 0
    assert report["decision"]["decision"] in ("promote", "keep", "stop")
    out = Path(cfg.paths.local("experiments", "it"))
    assert json.loads((out / "report.json").read_text())["experiment"] == "it"
    assert (out / "ctr.png").read_bytes()[:4] == b"\x89PNG"
    # The report's run keeps its artifacts in the workdir, not in ./mlruns of the directory the command ran in.
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=cfg.tracking_uri).get_run(shown["mlflow_run_id"])
    assert run.info.artifact_uri.startswith("file://" + os.path.abspath(cfg.paths.mlflow_artifacts)), run.info

    _estimate_the_model_from_the_exploring_arms(spark, cfg, str(base / "1"))


def _estimate_the_model_from_the_exploring_arms(spark: Any, cfg: Config, export: str) -> None:
    """``experiment estimate`` on Spark gives exactly the estimators of the same log in memory,
    and shows next to the online result in the report."""
    import pandas as pd

    from sparktf.experiments.offpolicy import logged_slots
    from sparktf.experiments.ope import estimate, reward_from_log
    from sparktf.experiments.report import read_events
    from sparktf.serving.replay import candidate_slates
    from sparktf.stages.experiment import off_policy_beside, run_estimate

    est = run_estimate(cfg, export, _Quiet(), logged_by=["control", "model"])
    assert est["logged_by"] == ["control", "model"] and set(est["logging"]) == {"control", "model"}
    assert est["logging"]["control"]["policy"].startswith("plackett_luce")
    slots = logged_slots(read_events(spark, cfg.paths.live_events), "it", ["control", "model"])
    log = slots.toPandas()
    assert len(log) == est["diagnostics"]["slots"] and (log["propensity"] < 1).any()
    slates = candidate_slates(slots, export, None).toPandas()
    both = log.merge(slates, on=["request_id", "position"], how="left")
    target = both["target_item"].fillna("").astype(str)
    model = reward_from_log(list(both["item_id"]), both["position"], both["reward"])
    mem = estimate(
        both["propensity"],
        both["reward"],
        (both["item_id"] == target).astype(float),
        unit=list(both["user_id"]),
        q_logged=model.q(list(both["item_id"]), both["position"]),
        q_target=pd.Series(model.q(list(target), both["position"])).where(target != "", 0.0),
    )
    for name in ("ips", "snips", "dr"):
        got, want = est["estimates"][name], mem[name]
        if want.value == want.value:
            assert got["value"] == pytest.approx(want.value, rel=1e-9, abs=1e-12), name
            assert got["ci_high"] == pytest.approx(want.ci_high, rel=1e-6, abs=1e-12), name
    assert est["diagnostics"]["matched_slots"] == mem["diagnostics"]["matched_slots"]
    # The replay is the server's ranking: in the model arm's greedy half every slot agrees.
    greedy = log[(log["arm"] == "model") & (log["propensity"] > 0.5)]
    assert len(greedy) and est["diagnostics"]["matched_slots"] >= len(greedy)
    # The candidate is the model arm's version: the report puts the estimate beside its online CTR.
    report = json.loads((Path(cfg.paths.local("experiments", "it")) / "report.json").read_text())
    beside = off_policy_beside(report, cfg.paths.local("experiments", "it"))
    assert beside is not None and set(beside["online"]) == {"model"}


def test_an_estimate_refuses_impressions_without_propensities(spark: Any, tmp_path: Path) -> None:
    from datetime import datetime

    from sparktf.data.schema import LIVE_EVENT_COLUMNS, LIVE_EVENT_DDL
    from sparktf.errors import DataError
    from sparktf.experiments.offpolicy import logged_slots

    t = datetime(2026, 1, 1)

    def row(i: str, arm: str, **live: Any) -> tuple[Any, ...]:
        values = {"event_time": t, "user_id": "u1", "item_id": "i1", "event_type": "impression", "event_id": f"e{i}"}
        values |= {"request_id": f"r{i}", "position": 1, "experiment": "x", "arm": arm, "ack_time": 0.0, **live}
        return tuple(values.get(c) for c in LIVE_EVENT_COLUMNS)

    rows = [row(str(i), "old") for i in range(3)]
    rows.append(row("9", "new", propensity=0.5, policy="p", context="[]"))
    events = spark.createDataFrame(rows, LIVE_EVENT_DDL)
    with pytest.raises(
        DataError, match=r"3 impression\(s\) of experiment 'x' have no propensity \(arms \['old'\]"
    ) as err:
        logged_slots(events, "x")
    assert "logs a propensity with every impression" in (err.value.hint or "")
    assert logged_slots(events, "x", ["new"]).count() == 1


class _Quiet:
    def print(self, *args: Any, **kwargs: Any) -> None:
        pass
