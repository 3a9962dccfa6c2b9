"""The feature pipeline: sessions, sequences, splits, vocabularies and training examples.

Everything is Spark SQL window functions and aggregations over one shuffle of the
events by user; no Python runs per event. Libraries that build sequence datasets
(RecBole, TFRS's examples) work in one process's memory, and Spark ML's
``StringIndexer`` orders ties arbitrarily and cannot reserve index 0 for
out-of-vocabulary ids, so this module writes the contract of
docs/data-contract.md itself.

How a user's events become examples:

1. **Sessions.** Events without a ``session_id`` get ``<user_id>:<n>``, where a gap
   longer than ``features.session_gap_minutes`` starts session ``n + 1``.
2. **Steps.** The user's events of ``features.positive_event_types`` in time order
   (ties: funnel order of ``data.event_types``, then item id), with consecutive
   repeats of one item collapsed into one step.
3. **Split labels.** ``leave_last_out``: last step ``test``, second-last
   ``validation``, the rest ``train``. ``time``: steps at or after
   ``features.time_cutoff`` are ``test``, the user's last step before it is
   ``validation`` (if there are two or more before it), the rest ``train``.
4. **Examples.** One row per step with at least one step before it: the target and
   up to ``max_history`` previous items. Histories only ever hold earlier steps,
   so no target is part of its own context. Users with fewer than
   ``min_user_events`` steps get no examples and are counted. ``window_end`` marks
   the train rows at the user's last train step and every ``max_history`` steps
   before it: their histories plus targets tile the train part, so a model that
   learns from every position of a window (SASRec) sees each train transition once
   per epoch by reading these rows only (validation and test rows are marked too).
5. **Train part only.** Vocabularies, item counts and popularity, ``seen`` and the
   user activity buckets come from ``train`` steps of the users with examples.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sparktf.config import FeatureConfig
from sparktf.data import storage
from sparktf.data.item_attributes import UNKNOWN_BUCKET, price_bucket_column
from sparktf.data.schema import ACTIVITY_LEVELS, EVENT_COLUMNS, EXAMPLE_COLUMNS, SESSION_BREAK, SPLITS, FeaturePaths
from sparktf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.window import WindowSpec

__all__ = [
    "EXAMPLE_COLUMNS",
    "SPLITS",
    "FeaturePaths",
    "build_features",
    "label_steps",
    "sessionize",
    "steps",
    "with_history",
]

_RANK = "_type_rank"


# --------------------------------------------------------------------------- building blocks


def _user_order(*, unbounded: bool = False) -> WindowSpec:
    from pyspark.sql import Window

    w = Window.partitionBy("user_id").orderBy("event_time", _RANK, "item_id")
    return w.rowsBetween(Window.unboundedPreceding, Window.currentRow) if unbounded else w


def _with_rank(events: DataFrame, event_types: tuple[str, ...]) -> DataFrame:
    from pyspark.sql import functions as F

    order = F.array(*[F.lit(t) for t in event_types])
    return events.withColumn(_RANK, F.array_position(order, F.col("event_type")))


def sessionize(events: DataFrame, gap_minutes: int, event_types: tuple[str, ...]) -> DataFrame:
    """Fill missing ``session_id`` values from time gaps, per user.

    A user's event starts a new session when it comes more than ``gap_minutes``
    after the user's previous event; sessions are numbered from 1 and named
    ``<user_id>:<n>``. Given session ids are kept as they are.
    """
    from pyspark.sql import functions as F

    df = events if _RANK in events.columns else _with_rank(events, event_types)
    prev = F.lag("event_time").over(_user_order())
    gap = F.unix_micros(F.col("event_time")) - F.unix_micros(prev)
    new = F.when(prev.isNull() | (gap > gap_minutes * 60_000_000), 1).otherwise(0)
    number = F.sum("_new").over(_user_order(unbounded=True))
    auto = F.concat(F.col("user_id"), F.lit(":"), number.cast("string"))
    return df.withColumn("_new", new).withColumn("session_id", F.coalesce(F.col("session_id"), auto)).drop("_new")


def steps(events: DataFrame, cfg: FeatureConfig, event_types: tuple[str, ...]) -> DataFrame:
    """Sessionized positive events with consecutive repeats collapsed, numbered per user.

    Returns:
        ``user_id, item_id, event_time, session_id, _type_rank, pos`` (1-based) and
        ``n`` (the user's number of steps).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = sessionize(events, cfg.session_gap_minutes, event_types)
    df = df.where(F.col("event_type").isin(list(cfg.positive_event_types)))
    prev_item = F.lag("item_id").over(_user_order())
    df = df.withColumn("_prev", prev_item).where(F.col("_prev").isNull() | (F.col("_prev") != F.col("item_id")))
    return df.select(
        "user_id",
        "item_id",
        "event_time",
        "session_id",
        _RANK,
        F.row_number().over(_user_order()).alias("pos"),
        F.count(F.lit(1)).over(Window.partitionBy("user_id")).alias("n"),
    )


def label_steps(df: DataFrame, cfg: FeatureConfig) -> DataFrame:
    """Add ``split`` (train/validation/test), ``n_train`` and ``eligible`` to :func:`steps`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos, n = F.col("pos"), F.col("n")
    if cfg.split == "leave_last_out":
        split = F.when(pos == n, "test").when(pos == n - 1, "validation").otherwise("train")
        n_train = F.greatest(n - 2, F.lit(0))
        out = df
    else:
        before = F.col("event_time") < F.lit(cfg.time_cutoff).cast("timestamp")
        n_pre = F.col("_n_pre")
        out = df.withColumn("_n_pre", F.sum(before.cast("int")).over(Window.partitionBy("user_id")))
        split = F.when(~before, "test").when((pos == n_pre) & (n_pre >= 2), "validation").otherwise("train")
        n_train = F.when(n_pre >= 2, n_pre - 1).otherwise(n_pre)
    return out.select(
        *df.columns,
        split.alias("split"),
        n_train.cast("int").alias("n_train"),
        (n >= cfg.min_user_events).alias("eligible"),
    )


def with_history(df: DataFrame, max_history: int, *, session_breaks: bool = False) -> DataFrame:
    """Add ``history``: the items of the up to ``max_history`` previous steps, oldest first.

    With ``session_breaks``, :data:`~sparktf.data.schema.SESSION_BREAK` stands between two
    steps of different sessions and the history is cut to ``max_history`` entries, breaks
    counted (the rule of :func:`sparktf.data.schema.history_with_breaks`).
    """
    from pyspark.sql import functions as F

    frame = _user_order().rowsBetween(-max_history, -1)
    if not session_breaks:
        return df.withColumn("history", F.collect_list("item_id").over(frame))
    steps = F.col("_steps")
    marked = F.flatten(
        F.transform(
            steps,
            lambda s, i: F.when(
                (i > 0) & (s["session_id"] != F.get(steps, i - 1)["session_id"]),  # get: no ANSI error at -1
                F.array(F.lit(SESSION_BREAK), s["item_id"]),
            ).otherwise(F.array(s["item_id"])),
        )
    )
    size = F.size("_marked")
    cut = F.when(size > max_history, F.slice("_marked", size - max_history + 1, F.lit(max_history))).otherwise(
        F.col("_marked")
    )
    lead = F.coalesce(F.get(F.col("_cut"), 0) == F.lit(SESSION_BREAK), F.lit(False))
    return (
        df.withColumn("_steps", F.collect_list(F.struct("item_id", "session_id")).over(frame))
        .withColumn("_marked", marked)
        .withColumn("_cut", cut)
        .withColumn("history", F.when(lead, F.slice("_cut", 2, max_history)).otherwise(F.col("_cut")))
        .drop("_steps", "_marked", "_cut")
    )


def _with_window_end(df: DataFrame, cfg: FeatureConfig) -> DataFrame:
    """Add ``window_end`` (step 4 of the module docstring): every validation and test row,
    and train rows whose histories plus targets tile the user's train part.

    Without session breaks a history holds ``M = max_history`` steps, so the train steps
    ``n_train, n_train - M, ...`` tile it. With them a step takes one entry, or two when it
    starts a session (its break), so the tiles are counted in entries: the train part's
    entries from the end in blocks of ``M - 1``, the last step of each block ends a window.
    A window's history (the ``M`` entries before its end) then reaches the previous
    block's last item, since one step adds at most two entries; so every train
    transition is still a label, a few twice.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos, n_train, m = F.col("pos"), F.col("n_train"), cfg.max_history
    if not cfg.session_breaks or m < 3:
        return df.withColumn("window_end", (F.col("split") != "train") | (((n_train - pos) % m) == 0))
    new = (pos > 1) & (F.col("session_id") != F.lag("session_id").over(_user_order()))
    entries = F.sum(F.lit(1) + F.coalesce(new, F.lit(False)).cast("int")).over(_user_order(unbounded=True))
    out = df.withColumn("_c", entries)
    out = out.withColumn("_ct", F.max(F.when(pos == n_train, F.col("_c"))).over(Window.partitionBy("user_id")))
    out = out.withColumn("_b", F.floor((F.col("_ct") - F.col("_c")) / (m - 1)))
    last_of_block = F.coalesce(F.lead("_b").over(_user_order()) != F.col("_b"), F.lit(True))
    return out.withColumn("window_end", (F.col("split") != "train") | last_of_block).drop("_c", "_ct", "_b")


def _latest(c: str) -> Column:
    """The most recent non-null value of ``c``; ties broken by the value, for determinism."""
    from pyspark.sql import functions as F

    # Null times sort first, so a null value only wins when the item never has another.
    return F.max(F.struct(F.when(F.col(c).isNotNull(), F.col("event_time")).alias("t"), F.col(c).alias("v")))["v"]


def _index(counts: DataFrame, key: str) -> DataFrame:
    """``key, index, count``: index 1..N by descending count, ties by key."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # A vocabulary is small; a constant partition key says so and keeps Spark from
    # warning about a window without one.
    w = Window.partitionBy(F.lit(0)).orderBy(F.col("count").desc(), F.col(key))
    return counts.select(key, F.row_number().over(w).cast("int").alias("index"), F.col("count").cast("long"))


def _write(df: DataFrame, path: str, *, partition_by: str | None = None) -> DataFrame:
    """Write ``df`` as Parquet and return the written table (read with ``df``'s schema, so an
    empty table, which Spark may write without any file, reads back as empty)."""
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(path)
    return df.sparkSession.read.schema(df.schema).parquet(path)


# --------------------------------------------------------------------------- the whole pipeline


def read_events(spark: SparkSession, events_path: str, live_events_path: str) -> DataFrame:
    """The validated events: ``data/events`` and, when the streaming job has written some,
    ``data/live/events`` (its extra columns — event ids, ack times — left out)."""
    events = spark.read.parquet(events_path)
    if live_events_path and storage.exists(spark, live_events_path):
        live = spark.read.parquet(live_events_path)
        events = events.select(*EVENT_COLUMNS).unionByName(live.select(*EVENT_COLUMNS))
    return events


def build_features(
    spark: SparkSession,
    events_path: str,
    out: str,
    cfg: FeatureConfig,
    *,
    event_types: tuple[str, ...],
    live_events_path: str,
) -> dict[str, Any]:
    """Build every table of ``data/features`` from the validated events.

    Args:
        spark: the session.
        events_path: the validated events (``data/events``).
        out: the features directory (``data/features``).
        cfg: the ``[features]`` section.
        event_types: ``data.event_types``, in funnel order (ties in time are ordered by it).
        live_events_path: the events the streaming job validated (``data/live/events``),
            read beside ``events_path`` when they exist.

    Returns:
        The statistics also written to ``stats.json``.

    Raises:
        ConfigError: none of ``features.positive_event_types`` is in ``data.event_types``.
        DataError: no user has enough steps for examples.
    """
    from pyspark import StorageLevel

    if not set(cfg.positive_event_types) & set(event_types):
        raise ConfigError(
            f"features.positive_event_types = {list(cfg.positive_event_types)!r} has no type that validation lets "
            f"through (data.event_types = {list(event_types)!r}), so no user would have a sequence.",
            hint="List at least one type of data.event_types in features.positive_event_types.",
        )
    paths = FeaturePaths(out)
    events = read_events(spark, events_path, live_events_path)
    labelled = label_steps(steps(_with_rank(events, event_types), cfg, event_types), cfg)
    labelled = labelled.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = _write_tables(spark, events, labelled, paths, cfg, event_types)
    finally:
        labelled.unpersist()
    stats["inputs"] = {"events": events_path, "events_fingerprint": storage.fingerprint(spark, events_path)}
    if live_events_path and storage.exists(spark, live_events_path):
        stats["inputs"]["live_events"] = live_events_path
        stats["inputs"]["live_events_fingerprint"] = storage.fingerprint(spark, live_events_path)
    stats["config"] = asdict(cfg)
    storage.write_text(spark, paths.stats, json.dumps(stats, indent=2, default=str) + "\n")
    if sum(stats["examples"].values()) == 0:
        raise DataError(
            f"No examples were made: none of {stats['users']['total']:,} users has "
            f"features.min_user_events = {cfg.min_user_events} steps or more "
            f"(see {paths.stats}).",
            hint="Lower features.min_user_events, or use more events per user.",
        )
    return stats


def _write_tables(
    spark: SparkSession,
    events: DataFrame,
    labelled: DataFrame,
    paths: FeaturePaths,
    cfg: FeatureConfig,
    event_types: tuple[str, ...],
) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from sparktf.data.sql_functions import udfs

    eligible = labelled.where("eligible")
    train = eligible.where(F.col("split") == "train")

    # Vocabularies: train part only, index 0 stays out-of-vocabulary.
    item_counts = train.groupBy("item_id").count().cache()  # one row per item: small
    item_vocab = _write(_index(item_counts.where(F.col("count") >= cfg.min_item_count), "item_id"), paths.item_vocab)
    # One pass over the train part per user gives the user vocabulary and ``seen``.
    per_user = (
        train.groupBy("user_id")
        .agg(F.count(F.lit(1)).alias("count"), F.array_sort(F.collect_set("item_id")).alias("items"))
        .cache()
    )
    _write(_index(per_user.select("user_id", "count"), "user_id"), paths.user_vocab)
    _write(per_user.select("user_id", "items"), paths.seen)
    per_user.unpersist()

    # Items: attributes as last seen in any event (catalogue facts, not behaviour);
    # count and popularity from the train part only.
    attrs = events.groupBy("item_id").agg(*[_latest(c).alias(c) for c in ("category", "brand", "price")])
    items = (
        attrs.join(item_counts, "item_id", "left")
        .join(item_vocab.select("item_id", F.col("index").alias("popularity_rank")), "item_id", "left")
        .select(
            "item_id",
            udfs()["normalize_category"](F.col("category")).alias("category"),
            "brand",
            "price",
            price_bucket_column(F.col("price"), cfg.price_buckets).alias("price_bucket"),
            F.coalesce(F.col("count"), F.lit(0)).cast("long").alias("count"),
            F.col("popularity_rank").cast("int"),
        )
    )
    items = _write(items, paths.items)
    sessions = _write(
        labelled.groupBy("user_id", "session_id").agg(
            F.min("event_time").alias("start_time"),
            F.max("event_time").alias("end_time"),
            F.count(F.lit(1)).alias("num_steps"),
        ),
        paths.sessions,
    )

    # One row per user: counts, and the activity thresholds (terciles of train-part
    # steps per user with examples). A user's first step never has a history.
    first = labelled.where(F.col("pos") == 1)
    elig = F.col("eligible")
    u = first.agg(
        F.count(F.lit(1)).alias("total"),
        F.sum(elig.cast("int")).alias("eligible"),
        F.sum(F.when(~elig, F.col("n"))).alias("short_steps"),
        F.sum("n").alias("steps"),
        F.sum((elig & (F.col("n_train") > 0)).cast("int")).alias("train_users"),
        F.percentile_approx(F.when(elig, F.col("n_train")), [1 / 3, 2 / 3]).alias("terciles"),
        *[F.sum((elig & (F.col("split") == s)).cast("int")).alias(f"first_{s}") for s in SPLITS[1:]],
    ).first()
    assert u is not None
    low, mid = (int(x) for x in (u["terciles"] or [0, 0]))
    activity = (
        F.when(F.col("n_train") <= low, ACTIVITY_LEVELS[0])
        .when(F.col("n_train") <= mid, ACTIVITY_LEVELS[1])
        .otherwise(ACTIVITY_LEVELS[2])
    )

    target = items.select(
        F.col("item_id").alias("target"),
        F.col("category").alias("target_category"),
        F.col("brand").alias("target_brand"),
        F.col("price_bucket").alias("target_price_bucket"),
    )
    examples = (
        with_history(_with_window_end(eligible, cfg), cfg.max_history, session_breaks=cfg.session_breaks)
        .where(F.col("pos") >= 2)
        .withColumnRenamed("item_id", "target")
        .join(F.broadcast(target), "target", "left")
        .select(
            "user_id",
            "history",
            F.size("history").cast("int").alias("history_len"),
            "target",
            "target_category",
            "target_brand",
            F.coalesce(F.col("target_price_bucket"), F.lit(UNKNOWN_BUCKET)).alias("target_price_bucket"),
            "event_time",
            activity.alias("user_activity"),
            "window_end",
            "split",
        )
    )
    examples = _write(examples, paths.examples, partition_by="split")

    per_split = {s: 0 for s in SPLITS}
    oov = {s: 0 for s in SPLITS}
    windows = {s: 0 for s in SPLITS}
    vocab_ids = F.broadcast(item_vocab.select(F.col("item_id").alias("target"), "index"))
    for row in (
        examples.select("target", "split", "window_end")
        .join(vocab_ids, "target", "left")
        .groupBy("split")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.col("index").isNull().cast("int")).alias("oov"),
            F.sum(F.col("window_end").cast("int")).alias("windows"),
        )
        .collect()
    ):
        per_split[row["split"]] = int(row["rows"])
        oov[row["split"]] = int(row["oov"] or 0)
        windows[row["split"]] = int(row["windows"] or 0)
    ev = events.agg(
        F.count(F.lit(1)).alias("input"),
        F.sum(F.col("event_type").isin(list(cfg.positive_event_types)).cast("int")).alias("positive"),
    ).first()
    it = item_counts.agg(
        F.count(F.lit(1)).alias("in_train"),
        F.sum((F.col("count") < cfg.min_item_count).cast("int")).alias("below"),
    ).first()
    assert ev is not None and it is not None
    item_counts.unpersist()
    return {
        "split": cfg.split,
        "time_cutoff": cfg.time_cutoff or None,
        "max_history": cfg.max_history,
        "events": {"input": int(ev["input"]), "positive": int(ev["positive"] or 0), "steps": int(u["steps"] or 0)},
        "users": {
            "total": int(u["total"]),
            "with_examples": int(u["eligible"] or 0),
            "dropped_below_min_user_events": int(u["total"]) - int(u["eligible"] or 0),
            "steps_of_dropped_users": int(u["short_steps"] or 0),
        },
        "examples": per_split,
        # The train rows that end a window (see step 4 of the module docstring).
        "train_windows": windows["train"],
        "targets_out_of_vocabulary": oov,
        "targets_without_history": {s: int(u[f"first_{s}"] or 0) for s in SPLITS[1:]},
        "vocab": {
            "items": int(it["in_train"]) - int(it["below"] or 0),
            "users": int(u["train_users"] or 0),
            "items_below_min_item_count": int(it["below"] or 0),
            "items_total": items.count(),
        },
        "user_activity_thresholds": {"low_max": low, "mid_max": mid},
        "sessions": sessions.count(),
        "event_types": list(event_types),
    }
