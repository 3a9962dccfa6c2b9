""":recommend against the batch path (Spark) for the same users, plus fallbacks and exclusions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import ServeConfig

from .serving_support import ITEMS, USERS, export_recommender, write_features

K = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sparktf.retrieval.index import build_index

    root = tmp_path_factory.mktemp("rec")
    export = export_recommender(root / "recsys", 1, seed=11)
    written = write_features(root / "features")
    emb = np.load(Path(export) / "assets.extra" / "item_embeddings.npy")
    ids = (Path(export) / "assets.extra" / "item_ids.txt").read_text().split()
    index_dir = str(root / "index")
    build_index(emb, ids, kind="brute_force").save(index_dir)
    return {"root": root, "export": export, "features": str(root / "features"), "index": index_dir, **written}


@pytest.fixture(scope="module")
def client(world: dict[str, Any]) -> Iterator[Any]:
    from functools import partial

    from fastapi.testclient import TestClient

    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    features = load_features(world["features"])
    loader = partial(load_version, features=features, index_path=world["index"])
    repo = ModelRepository(BasePathSource(str(world["root"] / "recsys")), loader)
    with TestClient(create_app(repo, ServeConfig(poll_interval_s=0), features)) as c:
        deadline = time.monotonic() + 120
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield c


@pytest.mark.spark
def test_recommend_matches_the_batch_recommendations_for_the_same_users(
    spark: Any, world: dict[str, Any], client: Any
) -> None:
    from sparktf.inference.batch import recommend_batch, user_contexts

    contexts = user_contexts(spark, world["features"], max_history=20)
    batch = recommend_batch(contexts, world["export"], world["index"], k=K, model_version="1", partitions=1).toPandas()
    assert set(batch["user_id"]) == set(world["contexts"])  # every user of the features
    assert client.get("/readyz").json()["index"].startswith("saved")
    for user, rows in batch.groupby("user_id"):
        rows = rows.sort_values("rank")
        r = client.post("/v1/models/recsys:recommend", json={"user_id": user, "k": K})
        assert r.status_code == 200, r.text
        reply = r.json()
        assert reply["model_version"] == "1" and reply["fallback"] is None
        assert reply["history_source"] == "features" and reply["history"] == world["contexts"][user]
        assert [it["item_id"] for it in reply["items"]] == rows["item_id"].tolist(), user
        np.testing.assert_allclose([it["score"] for it in reply["items"]], rows["score"], rtol=1e-4, atol=1e-5)


def test_history_in_the_request_is_used_and_excluded(world: dict[str, Any], client: Any) -> None:
    from sparktf.models.export import load_exported

    from .serving_support import exact_top_k

    model = load_exported(world["export"])
    history = ["i3", "i9", "i1"]
    r = client.post("/v1/models/recsys:recommend", json={"history": history, "k": 7, "exclude": ["i0"]}).json()
    q = model(["nobody"], [history])["query_embedding"][0]
    expected = exact_top_k(q, model.item_embeddings, list(model.item_ids), 7, {"i0", *history})
    assert r["history_source"] == "request" and r["fallback"] is None
    assert [it["item_id"] for it in r["items"]] == expected


def test_cold_start_and_unknown_users_fall_back_to_popular_items_and_say_so(client: Any) -> None:
    cold = client.post("/v1/models/recsys:recommend", json={"k": 3}).json()
    assert cold["fallback"] == "popular" and "cold start" in cold["reason"]
    assert [it["item_id"] for it in cold["items"]] == ITEMS[:3]  # the vocabulary is in popularity order
    stranger = client.post(
        "/v1/models/recsys:recommend", json={"user_id": "stranger", "k": 3, "exclude": ["i0"]}
    ).json()
    assert stranger["fallback"] == "popular" and "'stranger' is unknown" in stranger["reason"]
    assert [it["item_id"] for it in stranger["items"]] == ITEMS[1:4] and stranger["items"][0]["score"] is None
    # A user the model knows but the features do not (no history anywhere) still gets the model's answer.
    known = client.post("/v1/models/recsys:recommend", json={"user_id": USERS[-1], "k": 3}).json()
    assert known["fallback"] is None and known["history_source"] == "none" and len(known["items"]) == 3


def test_seen_items_are_excluded_unless_asked_not_to(world: dict[str, Any], client: Any) -> None:
    user = USERS[0]
    everything = set(world["seen"][user]) | set(world["contexts"][user])
    r = client.post("/v1/models/recsys:recommend", json={"user_id": user, "k": len(ITEMS)}).json()
    assert not everything & {it["item_id"] for it in r["items"]}
    assert len(r["items"]) == len(ITEMS) - len(everything)
    r = client.post(
        "/v1/models/recsys:recommend", json={"user_id": user, "k": len(ITEMS), "exclude_seen": False}
    ).json()
    assert len(r["items"]) == len(ITEMS)


def test_attributes_users_and_errors(client: Any) -> None:
    r = client.post("/v1/models/recsys:recommend", json={"user_id": USERS[1], "k": 2, "attributes": True}).json()
    assert {"category", "brand", "price"} <= set(r["items"][0])
    users = client.get("/v1/users").json()["users"]
    assert users == sorted(USERS[:-2])
    recent = client.get(f"/v1/users/{USERS[1]}").json()["recent"]
    assert len(recent) == 6 and recent[-1]["category"].startswith("c")
    assert client.get("/v1/users/stranger").status_code == 404
    for body in ({"k": 0}, {"history": "i1"}, {"user": "u1"}):
        bad = client.post("/v1/models/recsys:recommend", json=body)
        assert bad.status_code == 400 and bad.json()["error"]
    # :predict works on the same export (TF Serving clients keep working).
    out = client.post(
        "/v1/models/recsys:predict", json={"inputs": {"user_id": ["u1"], "history": [["i1", "i2"]]}}
    ).json()
    assert set(out["outputs"]) == {"query_embedding", "top_k_ids", "top_k_scores"}


def test_a_history_of_unknown_items_is_said_to_be_unknown(client: Any) -> None:
    """Items outside the model's catalogue: the reply lists them, and when none of the
    history is known the reply does not pass off an answer to nothing as personal (before:
    "fallback": null, items from the out-of-vocabulary embedding, no word about it)."""
    nobody = client.post("/v1/models/recsys:recommend", json={"history": ["nope1", "nope2"], "k": 3}).json()
    assert nobody["unknown_items"] == ["nope1", "nope2"] and nobody["fallback"] == "popular"
    assert "none of its 2 history item(s) is known to model version 1" in nobody["reason"]
    assert [it["item_id"] for it in nobody["items"]] == ITEMS[:3]
    # A user the model knows still gets the model's answer, from the user alone.
    user = USERS[-1]
    known = client.post("/v1/models/recsys:recommend", json={"user_id": user, "history": ["nope1"], "k": 3}).json()
    alone = client.post("/v1/models/recsys:recommend", json={"user_id": user, "k": 3}).json()
    assert known["fallback"] is None and known["unknown_items"] == ["nope1"]
    assert [it["item_id"] for it in known["items"]] == [it["item_id"] for it in alone["items"]]
    # Partly known: the known items carry the query; the unknown ones are listed.
    partly = client.post("/v1/models/recsys:recommend", json={"history": ["i3", "nope1"], "k": 3}).json()
    assert partly["fallback"] is None and partly["unknown_items"] == ["nope1"]
