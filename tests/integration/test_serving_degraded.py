"""A damaged optional part does not take serving down, and a damaged version does not
pass for a good one: a broken index, a half-written newest version, an export
without its assets.extra, and exports that appear whole to a polling server."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import ServeConfig

from .serving_support import RunningServer, exact_top_k, export_recommender, recommender_model, wait_ready

pytestmark = pytest.mark.slow


def serve_base(base: Path, index_path: str = "") -> RunningServer:
    from functools import partial

    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    repo = ModelRepository(BasePathSource(str(base)), partial(load_version, index_path=index_path), "recsys")
    # Entered without waiting for /readyz: some of these servers are never ready.
    return RunningServer(create_app(repo, ServeConfig(poll_interval_s=0)), ready_timeout_s=0)


def readyz_after_load(url: str, timeout_s: float = 120) -> Any:
    """/readyz once the first load has ended, one way or the other."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/readyz", timeout=10)
        if r.status_code == 200 or "still loading" not in r.text:
            return r
        time.sleep(0.2)
    raise AssertionError(f"{url}: the first load did not end in {timeout_s} s")


def test_a_damaged_index_falls_back_to_the_exact_index_with_a_warning_and_a_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the index's read error failed the whole version: /readyz stayed 503."""
    import httpx

    from sparktf.models.export import load_exported
    from sparktf.retrieval.index import build_index

    export = export_recommender(tmp_path / "recsys", 1, seed=6)
    model = load_exported(export)
    index = tmp_path / "index"
    build_index(model.item_embeddings, list(model.item_ids), kind="brute_force").save(str(index))
    (index / "manifest.json").write_text('{"format": "sparktf-ann-index", "format_ver')  # cut short
    with (
        caplog.at_level("WARNING", logger="sparktf.serving.recommend"),
        serve_base(tmp_path / "recsys", str(index)) as server,
    ):
        r = readyz_after_load(server.url)
        assert r.status_code == 200, r.text
        ready = r.json()
        assert ready["index"] == "brute_force (in memory)"
        assert "manifest.json is not valid JSON" in ready["problems"][0]
        history = ["i3", "i8"]
        reply = httpx.post(f"{server.url}/v1/models/recsys:recommend", json={"history": history, "k": 5}).json()
        metrics = httpx.get(f"{server.url}/metrics").text
    q = model(["x"], [history])["query_embedding"][0]
    assert [it["item_id"] for it in reply["items"]] == exact_top_k(
        q, model.item_embeddings, list(model.item_ids), 5, set(history)
    )
    assert 'sparktf_serving_index_fallback{model="recsys",version="1"} 1.0' in metrics
    assert any("Not using the index at" in r.getMessage() for r in caplog.records)


def test_a_half_written_newest_version_does_not_hide_the_older_one(tmp_path: Path) -> None:
    """Version 2 has its saved_model.pb but no variables yet (an export copied in file by
    file). Before, the server loaded only the newest, failed, and served nothing."""
    import httpx

    base = tmp_path / "recsys"
    export_recommender(base, 1, seed=1)
    (base / "2").mkdir()
    shutil.copy(base / "1" / "saved_model.pb", base / "2" / "saved_model.pb")
    with serve_base(base) as server:
        r = readyz_after_load(server.url)
        assert r.status_code == 200, r.text
        assert r.json()["default_version"] == 1 and "recsys/2" in r.json()["problems"][0], r.text
        states = {
            s["version"]: s["state"] for s in httpx.get(f"{server.url}/v1/models/recsys").json()["model_version_status"]
        }
        assert states == {"1": "AVAILABLE", "2": "END"}
        ok = httpx.post(f"{server.url}/v1/models/recsys:recommend", json={"history": ["i1"], "k": 3})
        assert ok.status_code == 200 and ok.json()["model_version"] == "1"


def test_an_export_without_its_sparktf_json_is_refused_not_served_half(tmp_path: Path) -> None:
    """Before, such a version loaded as a plain SavedModel: /readyz said ready while every
    :recommend was a 400. Now it is not loaded; alone, the server is not ready and says why;
    beside a good older version, the older one serves."""
    import httpx

    alone = tmp_path / "alone"
    export_recommender(alone, 1, seed=2)
    (alone / "1" / "assets.extra" / "sparktf.json").unlink()
    with serve_base(alone) as server:
        r = readyz_after_load(server.url)
        assert r.status_code == 503
        assert "without assets.extra/sparktf.json" in r.json()["error"], r.text

    both = tmp_path / "both"
    export_recommender(both, 1, seed=2)
    export_recommender(both, 2, seed=3)
    shutil.rmtree(both / "2" / "assets.extra")
    with serve_base(both) as server:
        r = readyz_after_load(server.url)
        assert r.status_code == 200 and r.json()["default_version"] == 1, r.text
        assert "assets.extra/sparktf.json" in r.json()["problems"][0]
        ok = httpx.post(f"{server.url}/v1/models/recsys:recommend", json={"history": ["i1"], "k": 3})
        assert ok.status_code == 200 and ok.json()["model_version"] == "1"


def test_an_export_appears_whole_to_a_poller(tmp_path: Path) -> None:
    """export_model writes aside and renames: a folder that watches the base path never
    sees a version folder without assets.extra/sparktf.json. Before, the version folder
    existed for the whole save, its assets.extra written last."""
    from sparktf.errors import ModelError
    from sparktf.models.export import export_model

    base = tmp_path / "recsys"
    base.mkdir()
    seen_incomplete: list[list[str]] = []
    seen_versions: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while True:
            stopping = stop.is_set()  # one whole scan after the export returned
            for entry in [e for e in (p.name for p in base.iterdir()) if e.isdigit()]:
                seen_versions.add(entry)
                if not (base / entry / "assets.extra" / "sparktf.json").is_file():
                    seen_incomplete.append(sorted(p.name for p in (base / entry).iterdir()))
            if stopping:
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        path = export_model(recommender_model(3), str(base), 1, k=5)
    finally:
        stop.set()
        watcher.join()
    assert seen_versions == {"1"} and not seen_incomplete, seen_incomplete[:3]
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no staging folder left behind
    assert np.load(Path(path) / "assets.extra" / "item_embeddings.npy").shape[0] == 40
    with pytest.raises(ModelError, match="already holds a SavedModel"):
        export_model(recommender_model(4), str(base), 1, k=5)
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_ready_servers_still_answer_after_a_good_start(tmp_path: Path) -> None:
    """The fallbacks above change nothing for a healthy base path: newest version, saved
    index used, no problems reported."""
    from sparktf.models.export import load_exported
    from sparktf.retrieval.index import build_index

    base = tmp_path / "recsys"
    export_recommender(base, 1, seed=1)
    export = export_recommender(base, 2, seed=2)
    model = load_exported(export)
    index = tmp_path / "index"
    build_index(model.item_embeddings, list(model.item_ids), kind="brute_force").save(str(index))
    import httpx

    with serve_base(base, str(index)) as server:
        ready = wait_ready(server.url, 120, httpx)
    assert ready["default_version"] == 2 and ready["index"] == f"saved ({index})" and "problems" not in ready
