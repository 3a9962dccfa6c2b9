"""Stage 8, ``index``: the ANN index over the model's item embeddings, in ``index/``.

Resolve the model (``index.model``, else the registry's ``tracking.registered_model``
at ``gate.champion_alias``, else the latest local export), tune and build the index
(:mod:`sparktf.retrieval`), write it to ``<workdir>/index/`` (with the TFRS ScaNN
SavedModel in ``index/tfrs_scann/1``), log the tuning to the model's MLflow run and
attach the index to the registry version. The manifest records which model and which
exact item vectors (a fingerprint) the index was built from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparktf.config import Config, IndexConfig
from sparktf.data.schema import FeaturePaths
from sparktf.errors import SparkTFError
from sparktf.inference.resolve import ModelRef, fingerprint, read_item_vectors, resolve_default, resolve_model
from sparktf.registry.uri import is_model_uri
from sparktf.stages._common import download_root, spark_for
from sparktf.stages.state import IndexResult

__all__ = ["IndexArgs", "index_args", "model_for_index", "run"]


@dataclass(frozen=True)
class IndexArgs:
    """What the index stage works with: ``[index]`` itself, and where the model comes from.

    Attributes:
        settings: the ``[index]`` section (kind, recall target, tuning grid, exports).
        model: ``index.model``; empty resolves the registry's champion, else a local export.
        kinds: the model kinds whose local exports are candidates (``index.model_kind``,
            else ``train.models``).
        registered_model, champion_alias, tracking_uri: the registry default.
        max_history: the history length of the tuning queries (``features.max_history``).
    """

    settings: IndexConfig
    model: str
    kinds: tuple[str, ...]
    registered_model: str
    champion_alias: str
    tracking_uri: str
    experiment: str
    models_dir: str
    features_path: str
    index_dir: str
    max_history: int


def index_args(cfg: Config) -> IndexArgs:
    ic = cfg.index
    return IndexArgs(
        settings=ic,
        model=ic.model,
        kinds=(ic.model_kind,) if ic.model_kind else tuple(cfg.train.models),
        registered_model=cfg.tracking.registered_model,
        champion_alias=cfg.gate.champion_alias,
        tracking_uri=cfg.tracking_uri,
        experiment=cfg.tracking.experiment,
        models_dir=cfg.paths.local("models"),
        features_path=cfg.paths.local("data", "features"),
        index_dir=cfg.paths.local("index"),
        max_history=cfg.features.max_history,
    )


def _registry_may_exist(cfg: Config) -> bool:
    # Querying a SQLite store that does not exist yet would create (and migrate) one.
    return bool(cfg.tracking.tracking_uri) or os.path.exists(cfg.paths.local("mlflow.db"))


def model_for_index(cfg: Config) -> tuple[ModelRef, str]:
    """The model the ``index`` stage indexes, and a sentence saying why that one."""
    args = index_args(cfg)
    if args.model:
        ref = resolve_model(args.model, tracking_uri=args.tracking_uri, download_root=download_root(cfg))
        return ref, f"index.model = {args.model!r} (version {ref.version})"
    return resolve_default(
        models_dir=args.models_dir,
        kinds=args.kinds,
        registered_model=args.registered_model if _registry_may_exist(cfg) else None,
        alias=args.champion_alias,
        tracking_uri=args.tracking_uri,
        download_root=download_root(cfg),
    )


# --------------------------------------------------------------------------- index


def _tuning_queries(cfg: Config, ref: ModelRef) -> np.ndarray | None:
    """Query embeddings of a random sample of real users, or None without features."""
    from pyspark.sql import functions as F

    from sparktf.inference.batch import user_contexts
    from sparktf.models.export import load_exported

    args = index_args(cfg)
    if not os.path.isdir(FeaturePaths(args.features_path).examples):
        return None
    spark = spark_for(cfg)
    rows = (
        user_contexts(spark, args.features_path, max_history=args.max_history, exclude_seen=False)
        .orderBy(F.rand(args.settings.seed))
        .limit(args.settings.tuning_queries)
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


def run(cfg: Config) -> IndexResult:
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
    args = index_args(cfg)
    index_dir = args.index_dir
    ic = args.settings
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
    if ic.attach_to_registry and is_model_uri(ref.uri):
        attached = _attach_to_registry(cfg, ref, index_dir)
    out = IndexResult(
        index_dir=index_dir,
        kind=index.kind,
        num_items=len(ids),
        model_version=ref.version,
        mlflow_run_id=run_id,
        registry_artifact=attached,
        seconds=round(time.perf_counter() - t0, 1),
    )
    if result is not None:
        out = dataclasses.replace(
            out, recall=result.recall, k=result.k, qps=result.qps, brute_force_qps=result.brute_force_qps
        )
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

    args = index_args(cfg)
    tracker = RunTracker(args.tracking_uri, args.experiment, artifact_root=cfg.paths.local("mlartifacts"))
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
    from sparktf.registry.registry import ModelRegistry

    name, version = ref.version.rsplit("/", 1)
    try:
        info = ModelRegistry(cfg.tracking_uri, name).attach_artifacts(version, {"index": index_dir})
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
