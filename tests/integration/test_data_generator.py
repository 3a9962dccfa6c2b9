"""The generator on Spark: exact size, the event schema, independence from partitioning, and a
first-order next-item signal measured with Spark SQL on what it wrote."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sparktf.config import GeneratorConfig
from sparktf.data.generator import BLOCK_USERS, generate_events
from sparktf.data.schema import event_schema

pytestmark = pytest.mark.spark


def test_same_events_whatever_the_partitioning(spark: Any) -> None:
    cfg = GeneratorConfig(num_events=12_000, num_users=2 * BLOCK_USERS + 500, num_items=400, num_categories=8)
    one = generate_events(spark, cfg, num_partitions=1)
    three = generate_events(spark, cfg, num_partitions=3)
    assert one.rdd.getNumPartitions() == 1 and three.rdd.getNumPartitions() == 3
    assert one.count() == cfg.num_events
    assert one.exceptAll(three).count() == 0 and three.exceptAll(one).count() == 0
    assert one.schema == event_schema()
    other_seed = generate_events(spark, dataclasses.replace(cfg, seed=1))
    assert other_seed.exceptAll(one).count() > cfg.num_events // 2


def test_next_item_signal_is_measurable_in_spark(spark: Any) -> None:
    cfg = GeneratorConfig(num_events=30_000, num_users=600, num_items=500, num_categories=10, session_ids=True)
    generate_events(spark, cfg).createOrReplaceTempView("gen_events")
    # Consecutive views in a session; even users fit "top-1 successor" and "most popular",
    # odd users are predicted with them.
    spark.sql(
        """
        SELECT user_id, item_id AS cur,
               lead(item_id) OVER (PARTITION BY session_id ORDER BY event_time) AS nxt,
               int(substring(user_id, 2)) % 2 = 0 AS fit
        FROM gen_events WHERE event_type = 'view'
        """
    ).where("nxt IS NOT NULL").createOrReplaceTempView("gen_pairs")
    row = spark.sql(
        """
        WITH counts AS (SELECT cur, nxt, count(*) AS n FROM gen_pairs WHERE fit GROUP BY cur, nxt),
             top AS (SELECT cur, max_by(nxt, struct(n, nxt)) AS guess FROM counts GROUP BY cur),
             popular AS (SELECT nxt AS guess FROM gen_pairs WHERE fit GROUP BY nxt ORDER BY count(*) DESC, nxt LIMIT 1)
        SELECT avg(CASE WHEN p.nxt = t.guess THEN 1.0 ELSE 0.0 END) AS successor,
               avg(CASE WHEN p.nxt = (SELECT guess FROM popular) THEN 1.0 ELSE 0.0 END) AS popular,
               count(*) AS pairs
        FROM gen_pairs p LEFT JOIN top t ON p.cur = t.cur WHERE NOT p.fit
        """
    ).first()
    assert row["pairs"] > 5_000
    assert row["successor"] > 0.25 and row["successor"] > 3 * row["popular"]
