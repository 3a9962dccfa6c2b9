"""Hot reload under concurrent load on a real uvicorn server: the registry alias moves,
the base path gets a new version, and no request fails or mixes versions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import ServeConfig

from .serving_support import RunningServer, export_recommender, free_port, save_half_plus, wait_ready

pytestmark = pytest.mark.slow

HISTORIES = [["i1", "i2"], ["i5"], ["i7", "i3", "i9"], ["i20", "i21"]]


def expected_for(export: str) -> dict[str, Any]:
    """What version ``export`` answers to each history: recommend ids and predict top_k_ids."""
    from sparktf.models.export import load_exported

    from .serving_support import exact_top_k

    model = load_exported(export)
    out = model(["anyone"] * len(HISTORIES), HISTORIES)
    ids = list(model.item_ids)
    return {
        "recommend": [
            exact_top_k(q, model.item_embeddings, ids, 4, set(h)) for q, h in zip(out["query_embedding"], HISTORIES)
        ],
        "predict": [[x.decode() for x in row] for row in out["top_k_ids"]],
    }


def hammer(url: str, stop: threading.Event, results: list[tuple[str, int, str, Any]], n_max: int) -> None:
    """Send :recommend and :predict in turn until told to stop (at most n_max requests)."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        for n in range(n_max):
            if stop.is_set():
                return
            i = n % len(HISTORIES)
            if n % 2:
                r = client.post(
                    "/v1/models/recsys:recommend", json={"user_id": "anyone", "history": HISTORIES[i], "k": 4}
                )
                got = [it["item_id"] for it in r.json().get("items", [])] if r.status_code == 200 else r.text
                results.append(("recommend", r.status_code, r.json().get("model_version", "?"), (i, got)))
            else:
                body = {"inputs": {"user_id": ["anyone"], "history": [HISTORIES[i]]}}
                r = client.post("/v1/models/recsys:predict", json=body)
                got = r.json()["outputs"]["top_k_ids"][0] if r.status_code == 200 else r.text
                results.append(("predict", r.status_code, r.headers.get("x-model-version", "?"), (i, got)))


def test_registry_alias_moves_under_load_without_a_failed_or_mixed_request(tmp_path: Path) -> None:
    import httpx
    from mlflow.tracking import MlflowClient

    from sparktf.serving.app import create_app
    from sparktf.serving.repository import ModelRepository, load_version, source_for
    from sparktf.training.tracking import RunTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = RunTracker(uri, "serving", artifact_root=str(tmp_path / "artifacts"))
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model("recsys")
    exports = {}
    for version, seed in ((1, 1), (2, 2)):
        exports[str(version)] = export_recommender(tmp_path / f"export{version}", 1, seed=seed)
        tracker.start(f"train-{version}")
        model_uri = tracker.log_model(exports[str(version)], "recommender")
        client.create_model_version("recsys", model_uri, run_id=tracker.run_id)
        tracker.end()
    client.set_registered_model_alias("recsys", "champion", "1")
    expected = {v: expected_for(p) for v, p in exports.items()}
    assert expected["1"] != expected["2"]  # the two versions are told apart by their answers

    source = source_for("models:/recsys@champion", tracking_uri=uri, cache_dir=str(tmp_path / "cache"))
    cfg = ServeConfig(poll_interval_s=0.2, batch_timeout_micros=2000)
    app = create_app(ModelRepository(source, load_version), cfg)
    results: list[tuple[str, int, str, Any]] = []
    stop = threading.Event()
    with RunningServer(app) as server:
        assert wait_ready(server.url, 60, httpx)["labels"] == {"champion": 1}
        threads = [threading.Thread(target=hammer, args=(server.url, stop, results, 400)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        client.set_registered_model_alias("recsys", "champion", "2")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if httpx.get(f"{server.url}/readyz").json()["default_version"] == 2 and any(
                r[2] == "2" for r in results[-8:]
            ):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        metrics = httpx.get(f"{server.url}/metrics").text
        status = httpx.get(f"{server.url}/v1/models/recsys").json()
    failures = [r for r in results if r[1] != 200]
    assert not failures, failures[:3]
    versions = {r[2] for r in results}
    assert versions == {"1", "2"}, versions
    for kind, _, version, (i, got) in results:
        assert got == expected[version][kind][i], (kind, version, i)
    assert [s["version"] for s in status["model_version_status"]] == ["2"]
    assert 'sparktf_serving_model_reloads_total{event="swapped",model="recsys"}' in metrics
    # Concurrent requests were batched: some model call took more than one row.
    counts = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("sparktf_serving_batch_size_")
    }
    assert (
        counts['sparktf_serving_batch_size_sum{kind="recommend"}']
        > counts['sparktf_serving_batch_size_count{kind="recommend"}']
    )


def test_cli_serves_a_base_path_and_follows_a_new_version_folder(tmp_path: Path) -> None:
    import httpx

    base = tmp_path / "half"
    base.mkdir()
    save_half_plus(base, 1, 2.0)
    port = free_port()
    cmd = [
        sys.executable, "-m", "sparktf.cli", "serve", "--model", str(base), "--workdir", str(tmp_path / "work"),
        "--set", f"serve.port={port}", "--set", "serve.poll_interval_s=0.3",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 180, httpx)
        body = {"instances": [1.0]}
        assert httpx.post(f"{url}/v1/models/half:predict", json=body).json() == {"predictions": [2.5]}
        staging = tmp_path / "staging"
        staging.mkdir()
        save_half_plus(staging, 2, 3.0)
        shutil.move(str(staging / "2"), str(base / "2"))
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            answer = httpx.post(f"{url}/v1/models/half:predict", json=body).json()
            if answer == {"predictions": [3.5]}:
                break
            time.sleep(0.2)
        assert answer == {"predictions": [3.5]}
        versions = [s["version"] for s in httpx.get(f"{url}/v1/models/half").json()["model_version_status"]]
        assert versions == ["2"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert "sparktf serve:" in out and '"status": 200' in out  # the banner and JSON access-log lines
    assert proc.returncode == 0 and "stopped on SIGTERM" in out, (proc.returncode, out[-2000:])


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(tmp_path: Path) -> None:
    import httpx

    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    base = tmp_path / "half"
    base.mkdir()
    save_half_plus(base, 1, 2.0)
    repo = ModelRepository(BasePathSource(str(base)), load_version, "half")
    with RunningServer(create_app(repo, ServeConfig(poll_interval_s=0))) as server:
        broken = base / "5"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        reload = httpx.post(f"{server.url}/v1/admin/reload").json()
        assert reload["default_version"] == 1 and "version 5" not in reload.get("error", "x")
        assert httpx.post(f"{server.url}/v1/models/half:predict", json={"instances": [1.0]}).json() == {
            "predictions": [2.5]
        }
        states = {
            s["version"]: s["state"] for s in httpx.get(f"{server.url}/v1/models/half").json()["model_version_status"]
        }
        assert states == {"5": "END", "1": "AVAILABLE"}
