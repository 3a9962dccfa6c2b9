"""Batch top-K on Spark against the same model and index called directly in this process,
the ``index`` and ``recommend`` stages end to end (a local export and the registry's
champion), and ``recommend(user_id, k)`` from Spark SQL."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

V = 400  # items
U = 60  # users
MAX_HISTORY = 6


def _sequences(seed: int = 7) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {f"u{u}": [f"i{x}" for x in rng.choice(V, size=int(rng.integers(4, 12)), replace=False)] for u in range(U)}


def _write_features(root: Path, seqs: dict[str, list[str]]) -> None:
    """The features stage's examples/ and seen/ (docs/data-contract.md), leave-last-out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows: dict[str, list[Any]] = {"user_id": [], "history": [], "history_len": [], "target": [], "event_time": []}
    splits: list[str] = []
    seen = {"user_id": [], "items": []}
    for u, seq in seqs.items():
        for t in range(1, len(seq)):
            history = seq[max(0, t - MAX_HISTORY) : t]
            rows["user_id"].append(u)
            rows["history"].append(history)
            rows["history_len"].append(len(history))
            rows["target"].append(seq[t])
            rows["event_time"].append(t0 + dt.timedelta(minutes=t))
            splits.append("test" if t == len(seq) - 1 else "validation" if t == len(seq) - 2 else "train")
        seen["user_id"].append(u)
        seen["items"].append(seq[: len(seq) - 2])
    table = pa.table({**rows, "split": splits})
    pq.write_to_dataset(table, str(root / "examples"), partition_cols=["split"])
    (root / "seen").mkdir(parents=True)
    pq.write_table(pa.table(seen), str(root / "seen" / "part-0.parquet"))


def _assert_same_ranking(ids_a: list[str], scores_a: np.ndarray, ids_b: list[str], scores_b: np.ndarray) -> None:
    """Equal rankings, except that items whose scores differ by float noise may swap places.

    TensorFlow's kernels may round differently for another batch composition (a Spark
    worker scores other users alongside), so a query embedding can move in its last bits.
    """
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-6)
    for pos, (a, b) in enumerate(zip(ids_a, ids_b, strict=True)):
        if a != b:
            assert b in ids_a and a in ids_b, (pos, ids_a, ids_b)
            assert abs(scores_a[ids_a.index(b)] - scores_b[pos]) <= 1e-5 * max(1.0, abs(scores_b[pos])), (pos, a, b)


def _reference_contexts(seqs: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Written from the definition, not from the code under test: the context is everything
    the user did (the last MAX_HISTORY items), and everything they did is excluded."""
    return {u: (seq[-MAX_HISTORY:], list(seq)) for u, seq in seqs.items()}


@pytest.fixture(scope="module")
def workdir_with_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model
    from sparktf.models.factory import build_model

    root = tmp_path_factory.mktemp("recwork")
    seqs = _sequences()
    _write_features(root / "data" / "features", seqs)
    catalog = Catalog.from_arrays([f"i{i}" for i in range(V)], user_ids=sorted(seqs))
    model = build_model(catalog, ModelParams(kind="two_tower", embedding_dim=8, max_history=MAX_HISTORY, seed=5))
    export_model(model, str(root / "models" / "two_tower" / "export"), 1, k=10)
    return root


def _config(root: Path, *sets: str) -> Any:
    from sparktf.config import load_config

    return load_config(
        overrides=[
            f"workdir={str(root)!r}".replace("'", '"'),
            "spark.master=local[2]",
            "spark.log_level=ERROR",
            "spark.shuffle_partitions=4",
            f"features.max_history={MAX_HISTORY}",
            "train.models=['two_tower']",
            *sets,
        ]
    )


def test_spark_batch_equals_the_same_model_and_index_called_directly(spark: Any, workdir_with_model: Path) -> None:
    from sparktf.inference.batch import BatchCounters, recommend_batch, user_contexts
    from sparktf.models.export import load_exported
    from sparktf.retrieval.index import build_index

    export = str(workdir_with_model / "models" / "two_tower" / "export" / "1")
    model = load_exported(export)
    # ScaNN on a small catalogue (min_items lowered), so the Spark workers load a real ScaNN
    # searcher; every leaf searched and every item rescored, so the answer is exact and the
    # only freedom left is the order of near-equal scores (see _assert_same_ranking).
    index = build_index(
        model.item_embeddings, model.item_ids, kind="scann", min_items=1, num_leaves=8, leaves_to_search=8, reorder=V
    )
    index_dir = str(workdir_with_model / "direct-index")
    index.save(index_dir)

    contexts = user_contexts(spark, str(workdir_with_model / "data" / "features"), max_history=MAX_HISTORY)
    got_contexts = {r.user_id: (list(r.history), sorted(r.exclude)) for r in contexts.collect()}
    expected_contexts = _reference_contexts(_sequences())
    assert got_contexts == {u: (h, sorted(e)) for u, (h, e) in expected_contexts.items()}

    counters = BatchCounters.create(spark)
    k = 7
    frame = recommend_batch(
        contexts, export, index_dir, k=k, model_version="two_tower/1", partitions=6, counters=counters
    ).toPandas()
    stats = counters.values()
    # Loaded once per Python worker (local[2]: at most two), not once per task (six).
    assert 1 <= stats["model_loads"] <= 2, stats
    assert stats["users"] == U and stats["rows"] == len(frame)

    sample = sorted(expected_contexts)[::3]
    users = list(sample)
    q = model(users, [expected_contexts[u][0] for u in users])["query_embedding"]
    ids, scores = index.search(q, k, [expected_contexts[u][1] for u in users])
    for row, user in enumerate(users):
        mine = frame[frame.user_id == user].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, k + 1))
        _assert_same_ranking(mine["item_id"].tolist(), mine["score"].to_numpy(), ids[row].tolist(), scores[row])
        assert not set(mine["item_id"]) & set(expected_contexts[user][1])
    assert set(frame["model_version"]) == {"two_tower/1"}


def test_index_and_recommend_stages_with_a_local_export_and_sql(spark: Any, workdir_with_model: Path) -> None:
    import pyarrow.dataset as ds

    from sparktf.retrieval.index import load_index, read_manifest
    from sparktf.stages import index as index_stage
    from sparktf.stages import recommend as recommend_stage

    cfg = _config(
        workdir_with_model,
        "index.k=10",
        "index.scann_min_items=100",
        "index.tuning_queries=50",
        "index.target_recall=0.9",
        "index.tfrs_export=false",
        "batch.k=5",
        "batch.table=recs_stage_test",
    )
    out = index_stage.run(cfg)
    assert out.model_version == "two_tower/1"
    manifest = read_manifest(str(workdir_with_model / "index"))
    tuning = manifest["info"]["tuning"]
    assert tuning["query_source"] == "given"  # real users' query embeddings from the features
    assert tuning["recall"] >= 0.9 or manifest["kind"] == "brute_force"
    # Logged to an MLflow run of the workdir's store.
    import mlflow

    run = mlflow.tracking.MlflowClient(cfg.tracking_uri).get_run(out.mlflow_run_id)
    assert run.data.metrics["index/recall_at_10"] == pytest.approx(tuning["recall"])
    assert run.data.tags["index/kind"] == manifest["kind"]

    rec = recommend_stage.run(cfg)
    assert rec.counters["users"] == U and rec.counters["short_users"] == 0 and rec.counters["rows"] == U * 5
    table = ds.dataset(str(workdir_with_model / "recommendations"), format="parquet").to_table()
    assert table.schema.names == ["user_id", "rank", "item_id", "score", "model_version"]
    assert spark.table("recs_stage_test").count() == U * 5

    # recommend(user_id, k) from SQL agrees with the batch output.
    sql = spark.sql("SELECT recommend('u3', 5) AS r, recommend(NULL, 5) AS n").collect()[0]
    batch_u3 = table.to_pandas().query("user_id == 'u3'").sort_values("rank")
    _assert_same_ranking(
        [x.item_id for x in sql.r],
        np.array([x.score for x in sql.r]),
        batch_u3["item_id"].tolist(),
        batch_u3["score"].to_numpy(),
    )
    assert sql.n is None
    with pytest.raises(Exception, match="k must be an integer from 1 to"):
        spark.sql("SELECT recommend('u3', 0)").collect()
    assert load_index(str(workdir_with_model / "index")).dim == 8


def test_registry_champion_is_indexed_and_recommended(spark: Any, workdir_with_model: Path, tmp_path: Path) -> None:
    """Runs after the local-export test and shares its MLflow store (a new SQLite store costs
    seconds of migrations); from here on the registry has a champion, which wins."""
    import mlflow

    from sparktf.registry.registry import ModelRegistry
    from sparktf.stages import index as index_stage
    from sparktf.stages import recommend as recommend_stage
    from sparktf.training.tracking import RunTracker

    cfg = _config(
        workdir_with_model,
        "tracking.registered_model=recs-test",
        "index.kind=brute_force",
        "batch.k=3",
    )
    tracker = RunTracker(cfg.tracking_uri, "registry-test", artifact_root=str(tmp_path / "art"))
    tracker.start("train")
    export = str(workdir_with_model / "models" / "two_tower" / "export" / "1")
    uri = tracker.log_model(export, "two_tower")
    tracker.end()
    client = mlflow.tracking.MlflowClient(cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    # Registered as the pipeline does, so the index can travel with the version.
    version = str(ModelRegistry(cfg.tracking_uri, "recs-test").register(uri).version)
    client.set_registered_model_alias("recs-test", "champion", version)

    out = index_stage.run(cfg)
    assert out.model_version == f"recs-test/{version}"
    # The TFRS ScaNN SavedModel sits beside the index, and the index travels with the version.
    assert (workdir_with_model / "index" / "tfrs_scann" / "1" / "saved_model.pb").exists()
    tags = client.get_model_version("recs-test", version).tags
    assert tags["index_artifact"].endswith("sparktf/index"), tags
    rec = recommend_stage.run(cfg)
    assert rec.model_version == f"recs-test/{version}" and rec.counters["users"] == U
    versions = {r.model_version for r in spark.read.parquet(str(workdir_with_model / "recommendations")).collect()}
    assert versions == {f"recs-test/{version}"}
    # The downloaded export is the registered one: same item vectors as the local file.
    downloaded = os.path.join(str(workdir_with_model), "state", "registry", f"recs-test-v{version}")
    assert np.array_equal(
        np.load(os.path.join(downloaded, "assets.extra", "item_embeddings.npy")),
        np.load(os.path.join(export, "assets.extra", "item_embeddings.npy")),
    )
