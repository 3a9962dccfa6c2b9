"""Stage 9, ``recommend``: top-K for every user on Spark, in ``recommendations/``.

The model the index was built from (or ``batch.model``, checked against the index's
fingerprint), each user's context from the features, top-K for every user on Spark
(:mod:`sparktf.inference.batch`), written to ``<workdir>/recommendations/`` (and the
table ``batch.table``), and ``recommend(user_id, k)`` registered on the session.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparktf.config import Config
from sparktf.errors import InferenceError
from sparktf.inference.resolve import ModelRef, fingerprint, read_item_vectors, resolve_model
from sparktf.registry.uri import is_model_uri, parse_model_uri
from sparktf.stages._common import download_root, spark_for
from sparktf.stages.state import RecommendResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["BatchArgs", "batch_args", "contexts_dir", "model_for_batch", "register_recommend_from_config", "run"]


@dataclass(frozen=True)
class BatchArgs:
    """What batch inference is called with: ``[batch]`` and the workdir's inputs and outputs."""

    k: int
    table: str
    model: str
    users: str
    exclude_seen: bool
    batch_size: int
    threads_per_worker: int
    partitions: int
    max_history: int
    tracking_uri: str
    features_path: str
    index_dir: str
    out_path: str


def batch_args(cfg: Config) -> BatchArgs:
    bc = cfg.batch
    return BatchArgs(
        k=bc.k,
        table=bc.table,
        model=bc.model,
        users=bc.users,
        exclude_seen=bc.exclude_seen,
        batch_size=bc.batch_size,
        threads_per_worker=bc.threads_per_worker,
        partitions=bc.partitions,
        max_history=cfg.features.max_history,
        tracking_uri=cfg.tracking_uri,
        features_path=cfg.paths.local("data", "features"),
        index_dir=cfg.paths.local("index"),
        out_path=cfg.paths.recommendations,
    )


def contexts_dir(cfg: Config) -> str:
    """Where the ``recommend`` stage writes the user contexts it scored."""
    return cfg.paths.local("state", "user_contexts")


def model_for_batch(cfg: Config, index_dir: str) -> ModelRef:
    """The model batch inference uses: ``batch.model``, else the one the index was built from.

    Raises:
        InferenceError: the index records no model, the recorded model is gone, or
            ``batch.model`` has other item vectors than the index.
    """
    from sparktf.retrieval.index import read_manifest

    args = batch_args(cfg)
    recorded = dict(read_manifest(index_dir).get("info", {}).get("model") or {})
    if args.model:
        ref = resolve_model(args.model, tracking_uri=args.tracking_uri, download_root=download_root(cfg))
        ids, emb, _ = read_item_vectors(ref.path)
        if recorded.get("fingerprint") and fingerprint(ids, emb) != recorded["fingerprint"]:
            raise InferenceError(
                f"batch.model = {args.model!r} ({ref.version}) has other item embeddings than the model the "
                f"index at {index_dir} was built from ({recorded.get('version')}).",
                hint="Rebuild the index for this model: sparktf index --set index.model=<the same model>.",
            )
        return ref
    if not recorded.get("path"):
        raise InferenceError(
            f"The index at {index_dir} does not record which model it was built from.",
            hint="Rebuild it with `sparktf index`, or set batch.model.",
        )
    if not os.path.exists(os.path.join(recorded["path"], "saved_model.pb")):
        uri = str(recorded.get("uri", ""))
        if is_model_uri(uri) and "/" in recorded.get("version", ""):
            name, version = str(recorded["version"]).rsplit("/", 1)
            pinned = parse_model_uri(f"models:/{name}/{version}", allow_path=False)
            return resolve_model(str(pinned), tracking_uri=args.tracking_uri, download_root=download_root(cfg))
        raise InferenceError(
            f"The model the index was built from ({recorded['path']}) no longer exists.",
            hint="Rebuild the index with `sparktf index`, or set batch.model.",
        )
    return ModelRef(
        path=str(recorded["path"]),
        version=str(recorded.get("version", "")),
        uri=str(recorded.get("uri", recorded["path"])),
        run_id=recorded.get("run_id"),
    )


# --------------------------------------------------------------------------- recommend


def _users_table(spark: SparkSession, spec: str) -> DataFrame | None:
    if not spec:
        return None
    if "/" in spec:
        return spark.read.parquet(spec)
    return spark.table(spec)


def run(cfg: Config) -> RecommendResult:
    """Top-K for every user on Spark (the pipeline's ``recommend`` stage)."""
    from pyspark.sql import functions as F

    from sparktf.inference.batch import BatchCounters, recommend_batch, user_contexts
    from sparktf.inference.sql import register_recommend

    t0 = time.perf_counter()
    bc = batch_args(cfg)
    index_dir = bc.index_dir
    ref = model_for_batch(cfg, index_dir)
    spark = spark_for(cfg)
    if spark.sparkContext.getConf().get("spark.python.worker.reuse", "true").lower() == "false":
        print(
            "Warning: spark.python.worker.reuse is false, so every task loads the model and the index "
            "again; set it to true (Spark's default) for batch inference."
        )
    contexts = user_contexts(
        spark,
        bc.features_path,
        max_history=bc.max_history,
        users=_users_table(spark, bc.users),
        exclude_seen=bc.exclude_seen,
    )
    # Materialised once, in as many files as tasks will run: the job then reads a plain,
    # evenly split table without another shuffle, and the SQL function reuses it.
    ctx_path = contexts_dir(cfg)
    contexts.repartition(bc.partitions or spark.sparkContext.defaultParallelism).write.mode("overwrite").parquet(
        ctx_path
    )
    contexts = spark.read.parquet(ctx_path)
    cold = contexts.where(F.size("history") == 0).count()

    counters = BatchCounters.create(spark)
    recs = recommend_batch(
        contexts,
        ref.path,
        index_dir,
        k=bc.k,
        model_version=ref.version,
        batch_size=bc.batch_size,
        threads_per_worker=bc.threads_per_worker,
        partitions=bc.partitions,
        counters=counters,
    )
    out_path = bc.out_path
    t_job = time.perf_counter()
    writer = recs.write.mode("overwrite").format("parquet")
    if bc.table:
        writer.option("path", out_path).saveAsTable(bc.table)
    else:
        writer.save(out_path)
    job_seconds = time.perf_counter() - t_job
    stats = counters.values()
    cold_note = " (including starting the Python workers and loading the model)" if stats["model_loads"] else ""
    register_recommend(spark, ref.path, index_dir, ctx_path, threads_per_worker=bc.threads_per_worker)
    print(
        f"Recommendations: {stats['users']} users ({cold} without history), {stats['rows']} rows, "
        f"{stats['short_users']} users with fewer than {bc.k} items left, model {ref.version}, loaded "
        f"{stats['model_loads']} time(s); {stats['users'] / max(job_seconds, 1e-9):.0f} users/s{cold_note}. "
        f"Written to {out_path}" + (f" and table {bc.table}" if bc.table else "") + "."
    )
    return RecommendResult(
        recommendations=out_path,
        table=bc.table or None,
        model_version=ref.version,
        cold_start_users=int(cold),
        users_per_second=round(stats["users"] / max(job_seconds, 1e-9), 1),
        seconds=round(time.perf_counter() - t0, 1),
        counters={k: int(v) for k, v in stats.items()},
    )


def register_recommend_from_config(spark: SparkSession, cfg: Config, *, name: str = "recommend") -> None:
    """Register ``recommend(user_id, k)`` on ``spark`` with the workdir's index, the model it
    was built from, and the user contexts the ``recommend`` stage wrote (for notebooks:
    ``register_recommend_from_config(spark, sparktf.load_config(...))``)."""
    from sparktf.inference.sql import register_recommend

    args = batch_args(cfg)
    ref = model_for_batch(cfg, args.index_dir)
    register_recommend(
        spark, ref.path, args.index_dir, contexts_dir(cfg), name=name, threads_per_worker=args.threads_per_worker
    )
