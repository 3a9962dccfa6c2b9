"""Batch top-K recommendations on Spark: every user (or a given user table), seen items excluded.

The job is one ``mapInArrow`` over a table of user contexts (``user_id``, ``history``,
``exclude``; see :func:`user_contexts`). Each Python worker loads the model export
and the index once, into a module-level cache keyed by (model path, index path,
index build), and reuses them for every Arrow batch of every task it runs; with
``spark.python.worker.reuse`` on (Spark's default) a worker outlives its tasks, so a
job loads the model once per worker, not per task and never per row. Within a
batch, users are scored ``batch_size`` at a time: the SavedModel turns raw ids into
query embeddings, the index returns the top K with the user's items excluded.

Output rows (:data:`OUTPUT_SCHEMA`): ``user_id``, ``rank`` (1..k), ``item_id``,
``score`` (query · item), ``model_version``. A user for whom fewer than k items
remain after exclusion gets fewer rows, and the job counts such users.

Why our own code and not ``mlflow.pyfunc.spark_udf`` or ``predict_batch_udf``: both
call a model on a column and return its outputs, but the exclusion lists, the
index beside the model and the one-row-per-rank output are ours to add; and
``predict_batch_udf``'s cache holds only the predict function, not an index.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError, InferenceError
from sparktf.retrieval.index import PAD_ID, AnnIndex, load_index

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "CONTEXT_SCHEMA",
    "OUTPUT_COLUMNS",
    "OUTPUT_SCHEMA",
    "BatchCounters",
    "index_token",
    "load_cached",
    "recommend_batch",
    "recommend_local",
    "recommend_rows",
    "user_contexts",
]

OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score", "model_version")
OUTPUT_SCHEMA = "user_id string, rank int, item_id string, score float, model_version string"
CONTEXT_SCHEMA = "user_id string, history array<string>, exclude array<string>"

# Two entries: a worker may serve a job while the next model version is tried.
_CACHE_SIZE = 2
_CACHE: OrderedDict[tuple[str, str, str], tuple[Any, AnnIndex]] = OrderedDict()


# --------------------------------------------------------------------------- contexts


def user_contexts(
    spark: SparkSession,
    features_dir: str,
    *,
    max_history: int = 20,
    users: DataFrame | None = None,
    exclude_seen: bool = True,
) -> DataFrame:
    """Each user's query context from the features: what they did, most recent last.

    The context of a user is their last example (latest ``event_time``; the test
    split wins ties): its history plus its target, i.e. everything the user did,
    cut to the last ``max_history`` items. The exclusions are the train-part
    ``seen`` items plus that whole context, so nothing the user interacted with is
    recommended. With ``features.session_breaks`` the history keeps its breaks; the last
    step joins the history's last session, since the examples do not say whether it
    began a new one (at most one break is missing, before the newest item).

    Args:
        spark: the session.
        features_dir: ``<workdir>/data/features`` (``examples/`` and ``seen/``).
        max_history: items of context kept (the model cuts to its own length anyway).
        users: a table with a ``user_id`` column to restrict to; users the features
            do not know get an empty context (the model's cold-start answer).
        exclude_seen: leave the user's items out of the recommendations.

    Returns:
        A DataFrame of :data:`CONTEXT_SCHEMA`, one row per user.

    Raises:
        DataError: the features are missing; SchemaError-like problems name the column.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    layout = FeaturePaths(features_dir)
    examples_dir, seen_dir = layout.examples, layout.seen
    for path in (examples_dir, seen_dir) if exclude_seen else (examples_dir,):
        if not _exists(spark, path):
            raise DataError(f"{path} does not exist.", hint="Run `sparktf prepare` (the features stage) first.")
    examples = spark.read.parquet(examples_dir)
    missing = {"user_id", "history", "target", "event_time"} - set(examples.columns)
    if missing:
        raise DataError(
            f"{examples_dir} lacks the columns {sorted(missing)} (has {examples.columns}).",
            hint="Rebuild the features with `sparktf prepare` (see docs/data-contract.md).",
        )
    empty = F.array().cast("array<string>")
    split_rank = (
        F.when(F.col("split") == "test", 3).when(F.col("split") == "validation", 2).otherwise(1)
        if "split" in examples.columns
        else F.lit(0)
    )
    last = Window.partitionBy("user_id").orderBy(F.col("event_time").desc_nulls_last(), split_rank.desc())
    did = F.array_compact(F.concat(F.coalesce(F.col("history"), empty), F.array(F.col("target"))))
    start = F.greatest(F.size("did") - F.lit(max_history) + 1, F.lit(1))
    ctx = (
        examples.where(F.col("user_id").isNotNull())
        .withColumn("_row", F.row_number().over(last))
        .where(F.col("_row") == 1)
        .select(F.col("user_id").cast("string").alias("user_id"), did.alias("did"))
    )
    if exclude_seen:
        seen = spark.read.parquet(seen_dir).select("user_id", F.col("items").alias("_seen"))
        ctx = ctx.join(seen, "user_id", "left")
        exclude = F.array_distinct(F.concat(F.coalesce(F.col("_seen"), empty), F.col("did")))
    else:
        exclude = empty
    ctx = ctx.select("user_id", F.slice("did", start, F.lit(max_history)).alias("history"), exclude.alias("exclude"))
    if users is None:
        return ctx
    if "user_id" not in users.columns:
        raise DataError(f"The user table has no user_id column (columns: {users.columns}).")
    wanted = users.select(F.col("user_id").cast("string").alias("user_id")).where(F.col("user_id").isNotNull())
    return (
        wanted.distinct()
        .join(ctx, "user_id", "left")
        .select("user_id", F.coalesce("history", empty).alias("history"), F.coalesce("exclude", empty).alias("exclude"))
    )


def _exists(spark: SparkSession, path: str) -> bool:
    if "://" not in path or path.startswith("file://"):
        return os.path.exists(path.removeprefix("file://"))
    jvm: Any = spark.sparkContext._jvm
    jsc: Any = spark.sparkContext._jsc
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return bool(hpath.getFileSystem(jsc.hadoopConfiguration()).exists(hpath))


# --------------------------------------------------------------------------- the core


def recommend_rows(
    model: Any,
    index: AnnIndex,
    users: Sequence[str],
    histories: Sequence[Sequence[str]],
    excludes: Sequence[Sequence[str]] | None,
    k: int,
    batch_size: int = 1024,
) -> tuple[dict[str, np.ndarray], int]:
    """Top-k rows for a batch of users (no Spark).

    Args:
        model: a loaded export (:class:`~sparktf.models.export.ExportedModel`) or any
            callable ``(users, histories) -> {"query_embedding": [B, D]}``.
        index: the index over the same model's item embeddings.
        users, histories, excludes: one entry per user (excludes may be None).
        k: recommendations per user.
        batch_size: users per model call.

    Returns:
        Columns ``user_id``, ``rank``, ``item_id``, ``score`` as numpy arrays (padding
        removed), and the number of users who got fewer than k rows.
    """
    id_parts, score_parts = [], []
    for start in range(0, len(users), batch_size):
        stop = start + batch_size
        q = model(list(users[start:stop]), [list(h) for h in histories[start:stop]])["query_embedding"]
        ids, scores = index.search(q, k, None if excludes is None else list(excludes[start:stop]))
        id_parts.append(ids)
        score_parts.append(scores)
    if not id_parts:
        empty = np.empty(0, dtype=object)
        return {"user_id": empty, "rank": np.empty(0, np.int32), "item_id": empty, "score": np.empty(0, np.float32)}, 0
    ids = np.vstack(id_parts)
    scores = np.vstack(score_parts)
    valid = ids != PAD_ID
    counts = valid.sum(axis=1)
    # Padding sits at the end of a row, so the valid entries of a row are ranks 1..count.
    ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), ids.shape)
    columns = {
        "user_id": np.repeat(np.asarray(users, dtype=object), counts),
        "rank": ranks[valid],
        "item_id": ids[valid],
        "score": scores[valid].astype(np.float32),
    }
    return columns, int((counts < k).sum())


def index_token(index_path: str) -> str:
    """Changes whenever the index at ``index_path`` is rebuilt (its manifest is rewritten),
    so a worker's cache never serves an old index under the same path."""
    from sparktf.retrieval.index import MANIFEST

    st = os.stat(os.path.join(index_path, MANIFEST))
    return f"{st.st_mtime_ns}-{st.st_size}"


def load_cached(model_path: str, index_path: str, token: str = "", threads: int = 0) -> tuple[Any, AnnIndex, bool]:
    """The model export and the index, loaded once per process.

    Args:
        model_path, index_path: what to load.
        token: :func:`index_token` of the index (part of the cache key).
        threads: TensorFlow intra/inter-op threads for a process that has not run
            TensorFlow yet (0 = TensorFlow's default, all cores). A Spark worker
            owns one core, so 1 avoids oversubscribing the machine.

    Returns:
        (model, index, whether this call loaded them).
    """
    key = (os.path.abspath(model_path), os.path.abspath(index_path), token)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit[0], hit[1], False
    from sparktf.tfenv import ensure_legacy_keras

    ensure_legacy_keras()  # TF_USE_LEGACY_KERAS before TensorFlow loads in this worker
    from sparktf.models.export import load_exported

    if threads > 0:
        _limit_tf_threads(threads)
    model = load_exported(model_path)
    index = load_index(index_path)
    dim = int(model.item_embeddings.shape[1])
    if dim != index.dim:
        raise InferenceError(
            f"The model at {model_path} makes {dim}-dimensional queries but the index at {index_path} "
            f"holds {index.dim}-dimensional items.",
            hint="Rebuild the index from this model with `sparktf index`.",
        )
    _CACHE[key] = (model, index)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return model, index, True


def _limit_tf_threads(threads: int) -> None:
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow already ran in this process; its thread pools are fixed now.
        pass


# --------------------------------------------------------------------------- Spark


@dataclass(frozen=True)
class BatchCounters:
    """Spark accumulators a job fills in; read them after the action (e.g. the write)."""

    model_loads: Any
    users: Any
    rows: Any
    short_users: Any

    @classmethod
    def create(cls, spark: SparkSession) -> BatchCounters:
        sc = spark.sparkContext
        return cls(sc.accumulator(0), sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))

    def values(self) -> dict[str, int]:
        return {
            "model_loads": int(self.model_loads.value),
            "users": int(self.users.value),
            "rows": int(self.rows.value),
            "short_users": int(self.short_users.value),
        }


def _output_batch(columns: dict[str, np.ndarray], model_version: str) -> pa.RecordBatch:
    import pyarrow as pa

    n = len(columns["rank"])
    return pa.RecordBatch.from_arrays(
        [
            pa.array(columns["user_id"], type=pa.string()),
            pa.array(columns["rank"], type=pa.int32()),
            pa.array(columns["item_id"], type=pa.string()),
            pa.array(columns["score"], type=pa.float32()),
            pa.array(np.full(n, model_version, dtype=object), type=pa.string()),
        ],
        names=list(OUTPUT_COLUMNS),
    )


def _recommend_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    model_path: str,
    index_path: str,
    token: str,
    k: int,
    model_version: str,
    batch_size: int,
    threads: int,
    counters: BatchCounters | None,
) -> Iterator[pa.RecordBatch]:
    model: Any = None
    index: Any = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if model is None:
            # Loaded at the first non-empty batch, so an empty partition loads nothing.
            model, index, loaded = load_cached(model_path, index_path, token, threads)
            if counters is not None and loaded:
                counters.model_loads.add(1)
        users = batch.column(batch.schema.get_field_index("user_id")).to_pylist()
        histories = [h or [] for h in batch.column(batch.schema.get_field_index("history")).to_pylist()]
        excludes = [e or [] for e in batch.column(batch.schema.get_field_index("exclude")).to_pylist()]
        columns, short = recommend_rows(model, index, users, histories, excludes, k, batch_size)
        if counters is not None:
            counters.users.add(len(users))
            counters.rows.add(len(columns["rank"]))
            counters.short_users.add(short)
        yield _output_batch(columns, model_version)


def recommend_batch(
    contexts: DataFrame,
    model_path: str,
    index_path: str,
    *,
    k: int,
    model_version: str,
    batch_size: int = 1024,
    threads_per_worker: int = 1,
    partitions: int = 0,
    counters: BatchCounters | None = None,
) -> DataFrame:
    """The (lazy) recommendations DataFrame for a table of user contexts.

    Args:
        contexts: :data:`CONTEXT_SCHEMA` rows (see :func:`user_contexts`).
        model_path: a local export directory every executor can read.
        index_path: the index built from that model, readable by every executor.
        k: recommendations per user.
        model_version: the label written into every row.
        batch_size: users per model call inside a worker.
        threads_per_worker: TensorFlow threads in each Python worker (see :func:`load_cached`).
        partitions: tasks to spread the users over (round-robin); 0 = keep the input's
            partitions when there are at least the session's default parallelism of them.
        counters: accumulators to fill (model loads, users, rows, users short of k).

    Returns:
        A DataFrame of :data:`OUTPUT_SCHEMA`; nothing runs until an action.

    Raises:
        InferenceError: a bad k, batch size, or a context table without the needed columns.
    """
    if k < 1 or batch_size < 1:
        raise InferenceError(f"k = {k} and batch_size = {batch_size} must both be positive.")
    missing = {"user_id", "history", "exclude"} - set(contexts.columns)
    if missing:
        raise InferenceError(
            f"The context table lacks the columns {sorted(missing)} (has {contexts.columns}).",
            hint=f"Build it with sparktf.inference.batch.user_contexts ({CONTEXT_SCHEMA}).",
        )
    spark = contexts.sparkSession
    n = partitions or spark.sparkContext.defaultParallelism
    contexts = contexts.select("user_id", "history", "exclude")
    # Round-robin spreads users evenly over the tasks; an input that already has enough
    # partitions (the stage's materialised contexts) skips that shuffle unless asked for.
    if partitions or contexts.rdd.getNumPartitions() < n:
        contexts = contexts.repartition(n)
    fn = functools.partial(
        _recommend_partition,
        model_path=os.path.abspath(model_path),
        index_path=os.path.abspath(index_path),
        token=index_token(index_path),
        k=int(k),
        model_version=model_version,
        batch_size=int(batch_size),
        threads=int(threads_per_worker),
        counters=counters,
    )
    return contexts.mapInArrow(fn, OUTPUT_SCHEMA)


def recommend_local(
    model: Any,
    index: AnnIndex,
    contexts: pa.Table,
    *,
    k: int,
    model_version: str,
    batch_size: int = 1024,
) -> pa.Table:
    """The same job in this process, without Spark (the benchmark's reference).

    Args:
        model, index: loaded as by :func:`load_cached`.
        contexts: an Arrow table with ``user_id``, ``history``, ``exclude``.
    """
    import pyarrow as pa

    batches = []
    for batch in contexts.to_batches(max_chunksize=10_000):
        users = batch.column(batch.schema.get_field_index("user_id")).to_pylist()
        histories = [h or [] for h in batch.column(batch.schema.get_field_index("history")).to_pylist()]
        excludes = [e or [] for e in batch.column(batch.schema.get_field_index("exclude")).to_pylist()]
        columns, _ = recommend_rows(model, index, users, histories, excludes, k, batch_size)
        batches.append(_output_batch(columns, model_version))
    if not batches:
        batches.append(_output_batch(recommend_rows(model, index, [], [], None, k)[0], model_version))
    return pa.Table.from_batches(batches)
