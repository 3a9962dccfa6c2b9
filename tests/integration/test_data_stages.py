"""`sparktf generate` and `sparktf prepare` end to end, then the contract and the no-leakage
property checked against an independent reconstruction of every user's steps in pandas."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sparktf.cli import main
from sparktf.config import Config, load_config
from sparktf.data.features import EXAMPLE_COLUMNS, FeaturePaths, sessionize
from sparktf.data.generator import generate_events

pytestmark = pytest.mark.spark

MAX_HISTORY = 5


@pytest.fixture(scope="module")
def run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Config:
    work = tmp_path_factory.mktemp("stages") / "work"
    overrides = [
        f"workdir={json.dumps(str(work))}",
        'spark.master="local[2]"',
        "spark.shuffle_partitions=4",
        "generator.num_events=15000",
        "generator.num_users=300",
        "generator.num_items=300",
        "generator.num_categories=10",
        "generator.num_brands=20",
        f"features.max_history={MAX_HISTORY}",
    ]
    args = [a for o in overrides for a in ("--set", o)]
    assert main(["generate", *args]) == 0
    assert main(["prepare", *args]) == 0
    return load_config(overrides=overrides)


def _steps(spark: Any, cfg: Config) -> dict[str, list[tuple[Any, str]]]:
    """Each user's steps, rebuilt in plain Python from the validated events."""
    rank = {t: i for i, t in enumerate(cfg.data.event_types)}
    pdf = (
        spark.read.parquet(cfg.paths.events)
        .selectExpr("user_id", "item_id", "event_type", "unix_micros(event_time) AS t")
        .toPandas()
    )
    out: dict[str, list[tuple[Any, str]]] = {}
    for user, g in pdf.groupby("user_id"):
        seq = sorted(zip(g["t"], g["event_type"].map(rank), g["item_id"], strict=True))
        steps: list[tuple[Any, str]] = []
        for t, _, item in seq:
            if not steps or steps[-1][1] != item:
                steps.append((t, item))
        out[str(user)] = steps
    return out


def test_generate_and_prepare_write_the_contract(spark: Any, run: Config) -> None:
    paths = FeaturePaths(run.paths.features)
    assert spark.read.parquet(run.paths.raw).count() == 15_000
    report = json.loads(Path(run.paths.join("data", "validation.json")).read_text())
    assert report["input_rows"] == report["good_rows"] == 15_000 and report["passed"]
    schemas = {
        paths.items: "item_id:string,category:string,brand:string,price:double,price_bucket:int,count:bigint,popularity_rank:int",
        paths.item_vocab: "item_id:string,index:int,count:bigint",
        paths.user_vocab: "user_id:string,index:int,count:bigint",
        paths.seen: "user_id:string,items:array<string>",
        paths.sessions: "user_id:string,session_id:string,start_time:timestamp,end_time:timestamp,num_steps:bigint",
    }
    for path, schema in schemas.items():
        assert spark.read.parquet(path).schema.simpleString() == f"struct<{schema}>", path
    examples = spark.read.parquet(paths.examples)
    assert sorted(examples.columns) == sorted(EXAMPLE_COLUMNS)
    assert {r["split"] for r in examples.select("split").distinct().collect()} == {"train", "validation", "test"}
    assert {r[0] for r in examples.select("user_activity").distinct().collect()} == {"low", "mid", "high"}
    stats = json.loads(Path(paths.stats).read_text())
    assert sum(stats["examples"].values()) == examples.count()
    assert stats["inputs"]["events"] == run.paths.events and len(stats["inputs"]["events_fingerprint"]) == 16


def test_no_leakage_examples_vocabularies_and_seen_match_an_independent_rebuild(spark: Any, run: Config) -> None:
    paths = FeaturePaths(run.paths.features)
    steps = _steps(spark, run)
    expected, train_items, seen = set(), Counter(), {}
    for user, seq in steps.items():
        if len(seq) < run.features.min_user_events:
            continue
        items = [item for _, item in seq]
        split = ["train"] * (len(items) - 2) + ["validation", "test"]
        for pos in range(1, len(items)):
            expected.add((user, items[pos], split[pos], tuple(items[max(0, pos - MAX_HISTORY) : pos])))
        train_items.update(items[: len(items) - 2])
        seen[user] = sorted(set(items[: len(items) - 2]))
    got = {
        (r["user_id"], r["target"], r["split"], tuple(r["history"]))
        for r in spark.read.parquet(paths.examples).collect()
    }
    assert got == expected
    vocab = {r["item_id"]: r["count"] for r in spark.read.parquet(paths.item_vocab).collect()}
    assert vocab == dict(train_items)
    assert {r["user_id"]: list(r["items"]) for r in spark.read.parquet(paths.seen).collect()} == seen
    # Time never runs backwards across the split: every train target precedes validation,
    # which precedes test, for every user.
    order = (
        spark.read.parquet(paths.examples)
        .groupBy("user_id")
        .pivot("split", ["train", "validation", "test"])
        .agg({"event_time": "max"})
    )
    assert order.where("train >= validation OR validation >= test").count() == 0


def test_sessionization_recovers_the_generators_sessions(spark: Any, run: Config) -> None:
    from pyspark.sql import functions as F

    truth = generate_events(spark, dataclasses.replace(run.generator, session_ids=True))
    ours = sessionize(truth.withColumn("session_id", F.lit(None).cast("string")), 30, run.data.event_types)
    pairs = truth.join(ours.withColumnRenamed("session_id", "ours"), ["user_id", "event_time", "item_id", "event_type"])
    assert pairs.count() == run.generator.num_events
    # The two ways of cutting sessions are the same partition of each user's events.
    n_truth, n_ours, n_pairs = (
        pairs.select(*cols).distinct().count() for cols in (["session_id"], ["ours"], ["session_id", "ours"])
    )
    assert n_truth == n_ours == n_pairs
    assert n_truth > 1_000  # about six events a session
