"""The pipeline stages ``index`` and ``recommend`` (``sparktf index``, ``sparktf recommend``).

``index``: resolve the model (``index.model``, else the registry's champion, else the
latest local export), tune and build the index over its item embeddings, write it to
``<workdir>/index/`` (with the TFRS ScaNN SavedModel in ``index/tfrs_scann/1``), and
log the tuning to the model's MLflow run. The manifest records which model and
which exact item vectors (a fingerprint) the index was built from.

``recommend``: the model the index was built from (or ``batch.model``, checked
against the index's fingerprint), each user's context from the features, top-K
for every user on Spark, written to ``<workdir>/recommendations/`` (and the table
``batch.table``), and ``recommend(user_id, k)`` registered on the session.

Why our own code: these are the glue between sparktf's workdir layout, config and
the index and batch modules; no library knows that layout.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.errors import InferenceError, SparkTFError
from sparktf.inference.resolve import (
    ModelRef,
    fingerprint,
    read_item_vectors,
    resolve_default,
    resolve_model,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparktf.config import Config

__all__ = ["contexts_dir", "index_stage", "model_for_batch", "model_for_index", "recommend_stage"]


def contexts_dir(cfg: Config) -> str:
    """Where the ``recommend`` stage writes the user contexts it scored."""
    return cfg.paths.local("state", "user_contexts")


def _download_root(cfg: Config) -> str:
    return cfg.paths.local("state", "registry")


def _registry_may_exist(cfg: Config) -> bool:
    # Querying a SQLite store that does not exist yet would create (and migrate) one.
    return bool(cfg.tracking.tracking_uri) or os.path.exists(cfg.paths.local("mlflow.db"))


def model_for_index(cfg: Config) -> tuple[ModelRef, str]:
    """The model the ``index`` stage indexes, and a sentence saying why that one."""
    if cfg.index.model:
        ref = resolve_model(cfg.index.model, tracking_uri=cfg.tracking_uri, download_root=_download_root(cfg))
        return ref, f"index.model = {cfg.index.model!r} (version {ref.version})"
    kinds = (cfg.index.model_kind,) if cfg.index.model_kind else tuple(cfg.train.models)
    return resolve_default(
        models_dir=cfg.paths.local("models"),
        kinds=kinds,
        registered_model=cfg.tracking.registered_model if _registry_may_exist(cfg) else None,
        alias=cfg.gate.champion_alias,
        tracking_uri=cfg.tracking_uri,
        download_root=_download_root(cfg),
    )


def model_for_batch(cfg: Config, index_dir: str) -> ModelRef:
    """The model batch inference uses: ``batch.model``, else the one the index was built from.

    Raises:
        InferenceError: the index records no model, the recorded model is gone, or
            ``batch.model`` has other item vectors than the index.
    """
    from sparktf.retrieval.index import read_manifest

    recorded = dict(read_manifest(index_dir).get("info", {}).get("model") or {})
    if cfg.batch.model:
        ref = resolve_model(cfg.batch.model, tracking_uri=cfg.tracking_uri, download_root=_download_root(cfg))
        ids, emb, _ = read_item_vectors(ref.path)
        if recorded.get("fingerprint") and fingerprint(ids, emb) != recorded["fingerprint"]:
            raise InferenceError(
                f"batch.model = {cfg.batch.model!r} ({ref.version}) has other item embeddings than the model the "
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
        if uri.startswith("models:/") and "/" in recorded.get("version", ""):
            name, version = str(recorded["version"]).rsplit("/", 1)
            return resolve_model(
                f"models:/{name}/{version}", tracking_uri=cfg.tracking_uri, download_root=_download_root(cfg)
            )
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


# --------------------------------------------------------------------------- index


def _tuning_queries(cfg: Config, ref: ModelRef) -> np.ndarray | None:
    """Query embeddings of a random sample of real users, or None without features."""
    from pyspark.sql import functions as F

    from sparktf.inference.batch import user_contexts
    from sparktf.models.export import load_exported
    from sparktf.spark import get_spark

    features = cfg.paths.local("data", "features")
    if not os.path.isdir(os.path.join(features, "examples")):
        return None
    spark = get_spark(cfg.spark)
    rows = (
        user_contexts(spark, features, max_history=cfg.features.max_history, exclude_seen=False)
        .orderBy(F.rand(cfg.index.seed))
        .limit(cfg.index.tuning_queries)
        .collect()
    )
    if not rows:
        return None
    model = load_exported(ref.path)
    parts = [
        model([r.user_id for r in rows[i : i + 1024]], [list(r.history) for r in rows[i : i + 1024]])["query_embedding"]
        for i in range(0, len(rows), 1024)
    ]
    return np.vstack(parts).astype(np.float32)


def _swap_in(staging: str, target: str) -> None:
    """Replace ``target`` by ``staging`` with two renames, so a reader never sees half an index."""
    old = None
    if os.path.exists(target):
        old = f"{target}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(staging, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def index_stage(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Build, tune, save and log the index (the pipeline's ``index`` stage)."""
    from sparktf.retrieval.index import BruteForceIndex, ScannIndex, ScannParams, build_index
    from sparktf.retrieval.tuning import tune_index

    t0 = time.perf_counter()
    ref, why = model_for_index(cfg)
    print(f"Indexing {ref.version} ({ref.path}): {why}.")
    ids, emb, _ = read_item_vectors(ref.path)
    info = {
        "model": {**ref.to_dict(), "fingerprint": fingerprint(ids, emb)},
        "model_source": why,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    index_dir = cfg.paths.local("index")
    ic = cfg.index
    k = min(ic.k, len(ids))
    result = None
    if ic.kind == "brute_force":
        index: Any = BruteForceIndex(emb, ids, info=info)
    elif ic.tune:
        queries = _tuning_queries(cfg, ref) if len(ids) >= ic.scann_min_items else None
        index, result = tune_index(
            emb,
            ids,
            k=k,
            target_recall=ic.target_recall,
            queries=queries,
            num_queries=ic.tuning_queries,
            min_items=ic.scann_min_items,
            seed=ic.seed,
            info=info,
        )
    else:
        index = build_index(
            emb,
            ids,
            "scann",
            num_leaves=ic.num_leaves,
            leaves_to_search=ic.leaves_to_search,
            reorder=ic.reorder,
            min_items=ic.scann_min_items,
            info=info,
        )
    os.makedirs(os.path.dirname(index_dir), exist_ok=True)
    staging = f"{index_dir}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        index.save(staging)
        if ic.tfrs_export:
            from sparktf.retrieval.tfrs_export import export_tfrs_scann

            if isinstance(index, ScannIndex):
                params = index.params
            else:
                # An exact index: let the TFRS layer search every leaf, which is exact too.
                base = ScannParams().resolved(len(ids))
                params = ScannParams(num_leaves=base.num_leaves, leaves_to_search=base.num_leaves, reorder=250)
            export_tfrs_scann(ref.path, os.path.join(staging, "tfrs_scann", "1"), k=k, params=params)
        _swap_in(staging, index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    run_id = None
    if result is not None and ic.log_to_mlflow:
        run_id = _log_tuning(cfg, ref, result)
    attached = None
    if ic.attach_to_registry and ref.uri.startswith("models:/"):
        attached = _attach_to_registry(cfg, ref, index_dir)
    out: dict[str, Any] = {
        "index_dir": index_dir,
        "kind": index.kind,
        "num_items": len(ids),
        "model_version": ref.version,
        "mlflow_run_id": run_id,
        "registry_artifact": attached,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if result is not None:
        out.update(recall=result.recall, k=result.k, qps=result.qps, brute_force_qps=result.brute_force_qps)
        print(
            f"Index: {index.kind}, recall@{result.k} = {result.recall:.4f} (target {result.target_recall}), "
            f"{result.qps:.0f} queries/s vs brute force {result.brute_force_qps:.0f}; {result.reason}."
        )
    elif "fallback_reason" in index.info:
        print(f"Index: {index.kind}: {index.info['fallback_reason']}.")
    return out


def _log_tuning(cfg: Config, ref: ModelRef, result: Any) -> str:
    from sparktf.retrieval.tuning import log_tuning_to_mlflow
    from sparktf.training.tracking import RunTracker

    tracker = RunTracker(cfg.tracking_uri, cfg.tracking.experiment, artifact_root=cfg.paths.local("mlartifacts"))
    tags = {"sparktf.stage": "index", "model": ref.version}
    if ref.run_id:
        from mlflow.exceptions import MlflowException

        try:
            tracker.client.get_run(ref.run_id)
        except MlflowException as exc:
            print(f"Note: the model's run {ref.run_id} is not in {cfg.tracking_uri} ({exc}); logging to a new run.")
            tags["model_run_id"] = ref.run_id
        else:
            tracker.run_id = ref.run_id
            return log_tuning_to_mlflow(tracker, result)
    tracker.start(f"index-{ref.version.replace('/', '-')}", tags=tags)
    try:
        return log_tuning_to_mlflow(tracker, result)
    finally:
        tracker.end()


def _attach_to_registry(cfg: Config, ref: ModelRef, index_dir: str) -> str | None:
    """Upload the index into the registry version it was built from; returns the artifact tag."""
    import importlib

    try:
        registry = importlib.import_module("sparktf.registry.registry")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("sparktf.registry"):
            raise
        print("Note: sparktf.registry is not installed here, so the index was not attached to the registry version.")
        return None
    name, version = ref.version.rsplit("/", 1)
    try:
        info = registry.ModelRegistry(cfg.tracking_uri, name).attach_artifacts(version, {"index": index_dir})
    except SparkTFError as exc:
        # The index itself is built and in place; only the copy beside the model is missing.
        print(
            f"Warning: the index was built but not attached to registry version {ref.version}: {exc.message} "
            "The server then builds an exact index in memory; set index.attach_to_registry = false to skip this."
        )
        return None
    tag = dict(getattr(info, "tags", None) or {}).get("index_artifact")
    print(f"Index attached to registry version {ref.version}" + (f" ({tag})." if tag else "."))
    return str(tag) if tag else ref.version


# --------------------------------------------------------------------------- recommend


def _users_table(spark: SparkSession, spec: str) -> DataFrame | None:
    if not spec:
        return None
    if "/" in spec:
        return spark.read.parquet(spec)
    return spark.table(spec)


def recommend_stage(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
    """Top-K for every user on Spark (the pipeline's ``recommend`` stage)."""
    from pyspark.sql import functions as F

    from sparktf.inference.batch import BatchCounters, recommend_batch, user_contexts
    from sparktf.inference.sql import register_recommend
    from sparktf.spark import get_spark

    t0 = time.perf_counter()
    index_dir = cfg.paths.local("index")
    ref = model_for_batch(cfg, index_dir)
    spark = get_spark(cfg.spark)
    bc = cfg.batch
    if spark.sparkContext.getConf().get("spark.python.worker.reuse", "true").lower() == "false":
        print(
            "Warning: spark.python.worker.reuse is false, so every task loads the model and the index "
            "again; set it to true (Spark's default) for batch inference."
        )
    contexts = user_contexts(
        spark,
        cfg.paths.local("data", "features"),
        max_history=cfg.features.max_history,
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
    out_path = cfg.paths.recommendations
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
    return {
        "recommendations": out_path,
        "table": bc.table or None,
        "model_version": ref.version,
        "cold_start_users": cold,
        "users_per_second": round(stats["users"] / max(job_seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - t0, 1),
        **stats,
    }
