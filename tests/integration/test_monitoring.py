"""Watching production on real HTTP (issue 19): the server's drift alerts against the truth of
the generator's world.

The reference profile is measured on shoppers' histories from the generator's world (what a
model trained on that world saw); the server is then driven over HTTP with other shoppers of
the same world (no alert), and with the same world shifted by ``generator.drift``: a surge of
the category the world views least (``history_category`` alerts, and no unknown items), and a
flash sale of items no model has seen (``unknown_item_rate`` alerts with the true share of
unseen items, and the known items' category mix does not). Sizes: 2,000 reference
histories and 800 requests per phase keep the chance of a false alert of one feature's JS
distance (10 bins) near 1e-6 (JS divergence ≈ χ²₉ · (1/800 + 1/2000) / 8).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import FeatureConfig, GeneratorConfig, MonitoringConfig, ServeConfig

from .serving_support import RunningServer

pytestmark = [pytest.mark.slow]

WORLD = GeneratorConfig(
    num_events=60_000, num_users=4_000, num_items=300, num_categories=8, num_brands=12, days=4, seed=19
)
CAP = 20
REQUESTS = 800


def _histories(gen: GeneratorConfig) -> dict[int, list[str]]:
    """Each shopper's items of the world's events in time order (both blocks), by user index."""
    from sparktf.data.generator import num_blocks, simulate_block

    out: dict[int, list[str]] = {}
    for block in range(num_blocks(gen)):
        sim = simulate_block(gen, block)
        for user in np.unique(sim.user):
            out[int(user)] = [f"i{i}" for i in sim.item[sim.user == user]]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An export over the world's items with the reference profile of 2,000 shoppers' histories."""
    from sparktf.data.generator import build_catalog
    from sparktf.data.item_attributes import price_bucket
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model, load_exported
    from sparktf.models.factory import build_model
    from sparktf.monitoring.profile import build_reference, write_reference

    root = tmp_path_factory.mktemp("monitoring")
    cat = build_catalog(WORLD)
    items = [f"i{i}" for i in range(cat.num_items)]
    category = {x: f"c{int(c)}" for x, c in zip(items, cat.category, strict=True)}
    edges = FeatureConfig().price_buckets
    price = {x: price_bucket(float(p), edges) for x, p in zip(items, cat.price, strict=True)}
    histories = _histories(WORLD)
    users = sorted(histories)
    reference_users, traffic_users = users[:2000], users[2000:]
    catalog = Catalog.from_arrays(
        items,
        category=[category[x] for x in items],
        brand=[f"b{int(b)}" for b in cat.brand],
        price_bucket=[price[x] for x in items],
    )
    model = build_model(catalog, ModelParams(kind="sequential", embedding_dim=8, seed=19, max_history=CAP))
    base = root / "models"
    path = export_model(model, str(base), 1, k=10)
    exported = load_exported(path)
    # The reference as training measures it: each shopper's history before their last item.
    ref_hist = [histories[u][:-1][-CAP:] for u in reference_users]
    emb = exported.item_embeddings
    q = exported(["" for _ in ref_hist], ref_hist)["query_embedding"]
    scores = q @ emb.T
    position = {x: i for i, x in enumerate(exported.item_ids.tolist())}
    for row, h in enumerate(ref_hist):  # seen items excluded, as the server ranks
        scores[row, [position[x] for x in h if x in position]] = -np.inf
    counts = {x: 0 for x in items}
    for u in reference_users:
        for x in histories[u]:
            counts[x] += 1
    reference = build_reference(
        model_kind="sequential",
        split="validation",
        item_ids=exported.item_ids.tolist(),
        item_counts=[counts[str(x)] for x in exported.item_ids.tolist()],
        item_category=category,
        item_price_bucket=price,
        histories=ref_hist,
        top1_scores=scores.max(axis=1),
        history_cap=CAP,
    )
    write_reference(str(Path(path) / "assets.extra"), reference)
    return {"base": base, "traffic": [histories[u] for u in traffic_users], "catalog": cat}


@contextmanager
def _server(base: Path) -> Iterator[RunningServer]:
    from functools import partial

    from sparktf.serving.app import create_app
    from sparktf.serving.monitor import ServedMonitoring
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    repo = ModelRepository(BasePathSource(str(base)), partial(load_version))
    monitoring = ServedMonitoring.from_config(MonitoringConfig(min_requests=REQUESTS // 2))
    app = create_app(repo, ServeConfig(poll_interval_s=0), monitoring=monitoring)
    with RunningServer(app) as running:
        yield running


def _drive(url: str, histories: list[list[str]]) -> dict[str, Any]:
    """POST one :recommend per history (its last item is what the shopper does next), then
    GET /v1/monitoring."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        for i, h in enumerate(histories[:REQUESTS]):
            r = client.post("/v1/models/models:recommend", json={"user_id": f"shopper{i}", "history": h[:-1], "k": 5})
            assert r.status_code == 200, r.text
        doc = client.get("/v1/monitoring").json()
        metrics = client.get("/metrics").text
    (version,) = doc["versions"]
    assert version["requests"] == REQUESTS and version["reference"]["queries"] == 2000
    return {"doc": doc, "version": version, "metrics": metrics}


def _alerting(version: dict[str, Any]) -> set[str]:
    return {a["feature"] for a in version["alerts"]}


def test_traffic_of_the_training_world_does_not_alert(world: dict[str, Any]) -> None:
    with _server(world["base"]) as running:
        seen = _drive(running.url, world["traffic"])
    version = seen["version"]
    assert version["status"] == "ok" and version["alerts"] == [] and seen["doc"]["status"] == "ok", version["alerts"]
    for name, f in version["features"].items():
        assert f["js"] < 0.1 and f["psi"] < 0.1, (name, f)
    assert version["rates"]["unknown_item_rate"]["value"] == 0.0
    # The same numbers for Prometheus.
    assert 'sparktf_monitoring_alert{model="models",version="1"} 0.0' in seen["metrics"]
    assert 'sparktf_monitoring_window_requests{model="models",version="1"} 800.0' in seen["metrics"]


def _shifted(drift: str, share: float) -> tuple[list[list[str]], Any]:
    from sparktf.data.generator import build_catalog

    # The same world (same seed: same items, categories and shoppers), its traffic shifted.
    gen = replace(WORLD, drift=drift, drift_share=share)
    histories = _histories(gen)
    return [histories[u] for u in sorted(histories)[2000:]][:REQUESTS], build_catalog(gen)


def test_a_category_surge_alerts_on_the_category_mix(world: dict[str, Any]) -> None:
    histories, cat = _shifted("category_surge", 0.5)
    with _server(world["base"]) as running:
        seen = _drive(running.url, histories)
    version = seen["version"]
    assert version["status"] == "alert"
    assert "history_category" in _alerting(version) and "unknown_item_rate" not in _alerting(version)
    alert = next(a for a in version["alerts"] if a["feature"] == "history_category" and a["statistic"] == "psi")
    assert alert["value"] > alert["threshold"] == 0.25
    # The surge is the category that grew: its share of the history items moved the most.
    f = version["features"]["history_category"]
    growth = {label: (c or 0) - r for label, r, c in zip(f["labels"], f["reference"], f["current"], strict=True)}
    assert max(growth, key=lambda k: growth[k]) == f"c{cat.surge_category}"
    line = 'sparktf_monitoring_drift{feature="history_category",model="models",statistic="psi",version="1"} '
    assert line in seen["metrics"]


def test_a_flash_sale_of_unseen_items_alerts_on_unknown_items(world: dict[str, Any]) -> None:
    # At 0.2 the sale's items are a fifth of the views; the known items' category mix barely
    # moves (bench_drift: category alerts 0/10 worlds at 0.2, 3/10 at 0.5, where shoppers leave
    # the sale's items for known ones of the same categories).
    histories, cat = _shifted("unseen_items", 0.2)
    unseen = {f"i{i}" for i in range(cat.base_items, cat.num_items)}
    with _server(world["base"]) as running:
        seen = _drive(running.url, histories)
    version = seen["version"]
    assert "unknown_item_rate" in _alerting(version) and "history_category" not in _alerting(version)
    rate = version["rates"]["unknown_item_rate"]
    # The truth: the share of the requests' (capped) history items that are the sale's unseen items.
    shown = [x for h in histories for x in h[:-1][-CAP:]]
    assert rate["value"] == pytest.approx(sum(x in unseen for x in shown) / len(shown), abs=1e-6)
    assert rate["value"] > rate["threshold"] == 0.1 and rate["alert"] is True
